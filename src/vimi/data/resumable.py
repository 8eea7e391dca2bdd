"""Folders of resumable sharded jobs (build-prompts, the importers): which job a folder holds, and shard names.

A job writes `job.json` (its signature: what must match for a re-run to continue) when it starts, then
each output shard atomically followed by its `part-XXXXX.done.json` marker. A re-run of the same job skips
the shards marked done; a different job in the folder is refused rather than mixed in.
"""

import json
from pathlib import Path

from vimi.errors import DataError
from vimi.utils.atomic import write_json_atomic

JOB_FILE = "job.json"


def shard_name(shard: int) -> str:
    return f"part-{shard:05d}"


def done_marker(out: Path, shard: int) -> Path:
    """The file whose presence says that output shard `shard` is complete."""
    return out / f"{shard_name(shard)}.done.json"


def start_or_resume(out: Path, signature: dict, what: str) -> None:
    """Start a job in `out`, or continue the same one; DataError naming `what` if `out` holds another."""
    out.mkdir(parents=True, exist_ok=True)
    job_file = out / JOB_FILE
    if job_file.is_file():
        if json.loads(job_file.read_text(encoding="utf-8")) != signature:
            raise DataError(
                f"{out} holds the output of a different {what} (see {job_file}); "
                "use another --out or delete the folder"
            )
    else:
        write_json_atomic(job_file, signature)
    for stale in out.glob(".*.tmp"):  # temp files of writes that a kill interrupted
        stale.unlink(missing_ok=True)
