"""Skip reports: every row a job drops is counted, logged with its reason and listed in a file."""

import json
import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vimi.utils.atomic import atomic_open, write_json_atomic

log = logging.getLogger(__name__)

LOGGED_PER_REASON = 5
"""Warnings printed per skip reason; the rest go to the report file only (a bad corpus can have millions)."""


def reason_kind(reason: str) -> str:
    """The counted category of a reason ("non_utf8_text: invalid start byte" -> "non_utf8_text")."""
    return reason.split(":", 1)[0]


class SkipLog:
    """Collects skip records {where, row, id, reason}; logs the first few of each kind (none with
    `logger=None`, for a worker whose records the driver logs)."""

    def __init__(self, logger: logging.Logger | None = log):
        self.records: list[dict[str, Any]] = []
        self.counts: Counter = Counter()
        self.logger = logger

    def skip(self, where: str, row: int | None, item_id: Any, reason: str) -> None:
        """Record one dropped row (`row` None: a line the parser could not make a row of)."""
        kind = reason_kind(reason)
        self.counts[kind] += 1
        self.records.append(
            {"where": where, "row": row, "id": None if item_id is None else str(item_id), "reason": reason}
        )
        if self.logger is None:
            return
        if self.counts[kind] <= LOGGED_PER_REASON:
            self.logger.warning("skipped %s row %s (id=%s): %s", where, row, item_id, reason)
        elif self.counts[kind] == LOGGED_PER_REASON + 1:
            self.logger.warning("more '%s' skips; all are listed in the skip report", kind)

    def take(self) -> list[dict[str, Any]]:
        """The records so far, handed over and forgotten; the counts, which limit the warnings, stay (a job that
        writes its skips shard by shard keeps one log for all shards)."""
        records, self.records = self.records, []
        return records

    def extend(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            self.records.append(record)
            self.counts[reason_kind(record["reason"])] += 1


def write_report(out_dir: str | Path, name: str, records: Iterable[dict], summary: dict[str, Any]) -> Path:
    """Write `<name>.skips.jsonl` (one skipped row per line) and `<name>.report.json` (counts) atomically.

    `records` is streamed to the file, so a job with millions of skips never holds them all."""
    out_dir = Path(out_dir)
    counts: Counter = Counter()
    with atomic_open(out_dir / f"{name}.skips.jsonl", "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            counts[reason_kind(record["reason"])] += 1
    report = {
        **summary,
        "skipped": counts.total(),
        "skipped_by_reason": dict(sorted(counts.items())),
        "skips_file": f"{name}.skips.jsonl",
    }
    write_json_atomic(out_dir / f"{name}.report.json", report)
    return out_dir / f"{name}.report.json"
