"""The resumable import every importer runs: input rows -> checked records -> a vimi manifest.

Output shard i holds the valid rows among input rows [i * shard_size, (i + 1) * shard_size); it is
written atomically, then marked done (`part-XXXXX.done.json`, with its skips). A re-run of the same
command streams the input again, passes over the rows of done shards without checking their files,
and so resumes a killed import: the finished folder holds the same bytes as an uninterrupted run's.
`manifest.json` is written last, the report and skips file just before it.

Memory stays bounded whatever the input's length: rows stream one chunk at a time, a shard keeps only
its records, and the duplicate-id pass (a first read of the ids alone) keeps 8 bytes a row.

Duplicate ids: the first row with an id keeps it, even when that row is skipped for another reason
(as in build-prompts), so that the first pass needs the ids alone.
"""

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from vimi.config import ImportConfig
from vimi.data.importers.tables import Item, Malformed, Row
from vimi.data.manifest import write_index, write_shard
from vimi.data.resumable import done_marker, shard_name, start_or_resume
from vimi.errors import DataError
from vimi.retrieval.report import SkipLog, write_report
from vimi.utils.atomic import write_json_atomic
from vimi.utils.files import file_stamp

log = logging.getLogger(__name__)

MEDIA_DIR = "media"
"""Files an importer writes itself (images out of tar shards) go to OUT/media/<shard name>/."""


class Mapping(Protocol):
    """How one raw format becomes manifest records: the only format-specific part of an import."""

    name: str
    """The report's name: OUT/<name>.report.json and OUT/<name>.skips.jsonl."""
    schema: pa.Schema
    has_ids: bool
    """False when rows are numbered instead (a table without an id column): no duplicate pass."""

    def row_id(self, row: Row, number: int) -> tuple[str | None, str]:
        """(id, "") or (None, reason); cheap, run in the reading thread."""
        ...

    def check(self, row: Row, number: int, item_id: str, shard: str) -> dict | str:
        """The manifest record, or the reason the row is skipped; run in a thread pool (reads files)."""
        ...


@dataclass
class ImportJob:
    out: Path
    shard_size: int
    threads: int
    signature: dict
    """What must match for a re-run to continue the shards in `out` (input files, columns, settings)."""
    extra: dict
    """Written into manifest.json beside the shard list (kind, source)."""


def import_job(
    out: Path, cfg: ImportConfig, kind: str, source: Path, inputs: list[Path], settings: dict
) -> ImportJob:
    """The job of importing the files `inputs` (of `source`) with `settings` into a `kind` manifest in `out`."""
    signature = {
        "kind": kind,
        "inputs": [file_stamp(path) for path in inputs],
        "settings": settings,
        "shard_size": cfg.shard_size,
    }
    return ImportJob(out, cfg.shard_size, cfg.threads, signature, {"kind": kind, "source": str(source)})


def run_import(
    read: Callable[[], Iterable[Item]],
    mapping: Mapping,
    job: ImportJob,
    progress: bool = True,
    read_ids: Callable[[], Iterable[Item]] | None = None,
) -> dict:
    """Run (or resume) an import; returns its report. `read()` streams the input from its start;
    `read_ids()`, if given, streams the same rows with no more than the id column (the first pass)."""
    if job.shard_size < 1:
        raise DataError(f"importer.shard_size must be >= 1, got {job.shard_size}")
    start_or_resume(job.out, job.signature, "import")
    repeated = _repeated_id_hashes(mapping, (read_ids or read)()) if mapping.has_ids else frozenset()
    threads = job.threads or os.cpu_count() or 1
    with ThreadPoolExecutor(threads) as pool:
        rows = tqdm(read(), desc=mapping.name, unit="row", disable=not progress)
        num_shards = _Importer(mapping, job, repeated, pool, chunk=max(64, 8 * threads)).run(rows)
    return _finish(job, mapping, num_shards)


def _hash64(item_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(item_id.encode("utf-8"), digest_size=8).digest(), "little")


def _repeated_id_hashes(mapping: Mapping, items: Iterable[Item]) -> frozenset[int]:
    """The 64-bit hashes that more than one row's id has (the first pass, over the ids alone)."""
    chunks, chunk, filled, number = [], np.empty(1 << 16, np.uint64), 0, 0
    for item in items:
        if isinstance(item, Malformed):
            continue
        item_id, _ = mapping.row_id(item, number)
        number += 1
        if item_id is None:
            continue
        chunk[filled] = _hash64(item_id)
        filled += 1
        if filled == len(chunk):
            chunks.append(chunk)
            chunk, filled = np.empty(1 << 16, np.uint64), 0
    hashes = np.concatenate([*chunks, chunk[:filled]])
    hashes.sort()  # in place: no second copy of 8 bytes a row
    return frozenset(np.unique(hashes[1:][hashes[1:] == hashes[:-1]]).tolist())


class _Importer:
    """The second pass: numbers rows, finds repeated ids exactly, fills one shard at a time."""

    def __init__(self, mapping: Mapping, job: ImportJob, repeated: frozenset[int], pool, chunk: int):
        self.mapping, self.job, self.repeated, self.pool, self.chunk = mapping, job, repeated, pool, chunk
        # Ids of the repeated hashes only, with the row each first appeared in: a hash collision of two
        # different ids never makes a duplicate.
        self.first_row: dict[int, dict[str, int]] = {}
        # One log for all shards, so that the first few skips of each kind are logged, not the first few a shard.
        self.skips = SkipLog(log)

    def run(self, items: Iterable[Item]) -> int:
        """Write every shard that is not done yet; returns the number of shards."""
        size, shard, in_shard = self.job.shard_size, 0, 0
        writer = self._open(0)
        for item in items:
            if isinstance(item, Malformed):
                if writer is not None:
                    writer.add(item, None, None, item.reason)
                continue
            if in_shard == size:
                if writer is not None:
                    writer.close()
                shard, in_shard = shard + 1, 0
                writer = self._open(shard)
            number = shard * size + in_shard
            in_shard += 1
            item_id, reason = self._identify(item, number)  # every row, so that first_row stays complete
            if writer is not None:
                writer.add(item, number, item_id, reason)
        if writer is not None:
            writer.close()
        return shard + 1

    def _open(self, shard: int) -> "_ShardWriter | None":
        if done_marker(self.job.out, shard).is_file():
            return None
        for stale in (self.job.out / MEDIA_DIR / shard_name(shard)).glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        return _ShardWriter(shard, self.mapping, self.job, self.pool, self.chunk, self.skips)

    def _identify(self, row: Row, number: int) -> tuple[str | None, str]:
        item_id, reason = self.mapping.row_id(row, number)
        if reason or not self.repeated:
            return item_id, reason
        digest = _hash64(item_id)
        if digest in self.repeated:
            first = self.first_row.setdefault(digest, {}).setdefault(item_id, number)
            if first != number:
                return item_id, f"duplicate_id: {item_id} is also row {first}, which keeps it"
        return item_id, ""


class _ShardWriter:
    """One output shard: rows are checked a chunk at a time in the pool, in input order."""

    def __init__(
        self,
        shard: int,
        mapping: Mapping,
        job: ImportJob,
        pool: ThreadPoolExecutor,
        chunk: int,
        skips: SkipLog,
    ):
        self.shard, self.mapping, self.job, self.pool, self.chunk = shard, mapping, job, pool, chunk
        self.name = shard_name(shard)
        self.records: list[dict] = []
        self.skips = skips  # shared by the shards, which take their own records from it one after another
        self.rows = 0
        self.pending: list[tuple[Item, int | None, str | None, str]] = []

    def add(self, item: Item, number: int | None, item_id: str | None, reason: str) -> None:
        if number is not None:  # a malformed line is reported but is no input row
            self.rows += 1
        self.pending.append((item, number, item_id, reason))
        if len(self.pending) >= self.chunk:
            self._check_pending()

    def _check_pending(self) -> None:
        results = self.pool.map(self._check, self.pending)
        for (item, number, item_id, _), result in zip(self.pending, results):
            if isinstance(result, str):
                self.skips.skip(item.where, number, item_id, result)
            else:
                self.records.append(result)
        self.pending = []

    def _check(self, pending: tuple[Item, int | None, str | None, str]) -> dict | str:
        item, number, item_id, reason = pending
        return reason or self.mapping.check(item, number, item_id, self.name)

    def close(self) -> None:
        self._check_pending()
        write_shard(self.job.out / f"{self.name}.parquet", self.records, self.mapping.schema)
        done = {
            "file": f"{self.name}.parquet",
            "rows": len(self.records),
            "input_rows": self.rows,
            "skips": self.skips.take(),
        }
        write_json_atomic(done_marker(self.job.out, self.shard), done)


def _finish(job: ImportJob, mapping: Mapping, num_shards: int) -> dict:
    """The report (skips streamed from the done markers) and then the manifest index."""
    markers = [done_marker(job.out, s) for s in range(num_shards)]
    summaries = []
    for marker in markers:
        done = _read_marker(marker)
        summaries.append({key: done[key] for key in ("file", "rows", "input_rows")})
    totals = {
        "input_rows": sum(s["input_rows"] for s in summaries),
        "rows": sum(s["rows"] for s in summaries),
    }
    report_path = write_report(job.out, mapping.name, _marker_skips(markers), totals)
    write_index(job.out, [{"file": s["file"], "rows": s["rows"]} for s in summaries], job.extra)
    report = json.loads(report_path.read_text(encoding="utf-8"))
    log.info(
        "%s: %d of %d rows written to %s (%d skipped: %s)",
        mapping.name,
        report["rows"],
        report["input_rows"],
        job.out,
        report["skipped"],
        report["skipped_by_reason"],
    )
    return report


def _read_marker(marker: Path) -> dict[str, Any]:
    return json.loads(marker.read_text(encoding="utf-8"))


def _marker_skips(markers: list[Path]) -> Iterator[dict]:
    for marker in markers:  # one shard's skips in memory at a time
        yield from _read_marker(marker)["skips"]
