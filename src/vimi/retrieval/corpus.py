"""Reading untrusted manifests row by row (validated, never crashing on one bad row) and the
memory-mapped corpus store that resolves retrieval hits to (id, text, image) without loading the memory.

The corpus store is an uncompressed Arrow IPC file: the same columnar layout as Parquet's decoded
pages, but memory-mappable, so `take(rows)` touches only the pages of the hit rows. A Parquet
file would have to decompress whole row groups for every random lookup.
"""

import contextlib
import functools
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vimi.data.manifest import manifest_root, read_index, shard_paths
from vimi.errors import DataError
from vimi.retrieval.executors import map_tasks
from vimi.retrieval.tokenize import decode_text
from vimi.utils.atomic import atomic_path

CORPUS_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("image", pa.string())])


def as_binary(table: pa.Table, columns: list[str]) -> pa.Table:
    """String columns as binary, so one non-UTF-8 value becomes one skipped row, not a failed batch."""
    for name in columns:
        if name in table.column_names and pa.types.is_string(table.schema.field(name).type):
            table = table.set_column(table.schema.get_field_index(name), name, table[name].cast(pa.binary()))
    return table


def check_columns(path: Path, required: list[str]) -> list[str]:
    """The manifest's column names; a DataError naming the missing ones otherwise."""
    names = pq.ParquetFile(shard_paths(path)[0]).schema_arrow.names
    missing = [c for c in required if c not in names]
    if missing:
        raise DataError(
            f"{path}: manifest lacks column(s) {missing} (has {names}); a corpus needs {required}"
        )
    return names


def resolve_media(root: Path, value: object) -> tuple[str | None, str]:
    """An absolute media path that exists, or (None, reason)."""
    rel, reason = decode_text(value)
    if rel is None:
        return None, "missing_media_path" if reason == "empty_text" else reason
    path = rel if os.path.isabs(rel) else os.path.join(root, rel)
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        return None, f"missing_media: {path}"
    return path, ""


def decode_id(value: object) -> tuple[str | None, str]:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value), ""
    text, reason = decode_text(value)
    return (text, "") if text is not None else (None, "missing_id" if reason == "empty_text" else reason)


def iter_table_rows(path: str | Path, columns: list[str], batch_rows: int = 8192) -> Iterator[dict]:
    """Every row of a manifest in order, text columns as raw bytes (decode with `decode_text`)."""
    for shard in shard_paths(path):
        try:
            for batch in pq.ParquetFile(shard).iter_batches(batch_size=batch_rows, columns=columns):
                yield from as_binary(pa.Table.from_batches([batch]), columns).to_pylist()
        except (pa.ArrowInvalid, OSError) as err:
            raise DataError(f"{shard}: unreadable manifest shard: {err}") from None


def iter_row_range(
    path: str | Path, start: int, stop: int, binary_columns: list[str], columns: list[str] | None = None
) -> Iterator[tuple[int, pa.Table]]:
    """Rows [start, stop) of a manifest as (first row, table) pieces, one input shard at a time, so a
    range of millions of rows streams in bounded memory; `binary_columns` as raw bytes."""
    root = manifest_root(path)
    offset = 0
    for shard in read_index(path)["shards"]:
        lo, hi = offset, offset + shard["rows"]
        offset = hi
        if hi <= start or lo >= stop:
            continue
        table = _read_shard(str(root / shard["file"]))
        if columns is not None:
            table = table.select(columns)
        first = max(start, lo)
        yield first, as_binary(table.slice(first - lo, min(stop, hi) - first), binary_columns)


def read_row_range(path: str | Path, start: int, stop: int, binary_columns: list[str]) -> pa.Table:
    """Rows [start, stop) of a manifest (over its shards) as one table, `binary_columns` as raw bytes."""
    pieces = [table for _, table in iter_row_range(path, start, stop, binary_columns)]
    if not pieces:
        return pa.table({})
    names = pieces[0].column_names
    return pa.concat_tables([p.select(names) for p in pieces], promote_options="permissive")


def find_duplicate_rows(path: str | Path, executor: str = "local", address: str = "") -> frozenset[int]:
    """Rows whose id repeats an earlier row's id (the first occurrence is kept; rows without an id never count).

    A map over the input shards (in this process or as Ray tasks, see `executors.map_tasks`) hashes
    every id to 64 bits; the driver keeps 16 bytes a row with its row number (8 GB for 500M rows, where
    a Python set of the ids takes ~100 bytes a row). Rows whose hash repeats are then compared by their
    ids in a second pass, so a hash collision never drops a row.
    """
    shards = [str(shard) for shard in shard_paths(path)]
    parts = map_tasks(_id_hashes, shards, executor=executor, address=address, progress=False)
    hashes, rows, first_row = [], [], 0
    for num_rows, kept, shard_hashes in parts:
        hashes.append(shard_hashes)
        rows.append(kept + first_row)
        first_row += num_rows
    if not hashes:
        return frozenset()
    hashes, rows = np.concatenate(hashes), np.concatenate(rows)
    order = np.argsort(hashes)
    sorted_hashes = hashes[order]
    repeats = sorted_hashes[1:] == sorted_hashes[:-1]
    in_group = np.zeros(len(order), bool)
    in_group[1:] |= repeats
    in_group[:-1] |= repeats
    if not in_group.any():
        return frozenset()
    # Every repeat of an id, and its first occurrence, share a hash: compare the ids of these rows only.
    candidates = np.sort(rows[order[in_group]])
    wanted = set(candidates.tolist())
    ids_of = {
        row: decode_id(record["id"])[0]
        for row, record in enumerate(iter_table_rows(path, ["id"]))
        if row in wanted
    }
    duplicates, seen = [], set()
    for row in candidates.tolist():
        if ids_of[row] in seen:
            duplicates.append(row)
        seen.add(ids_of[row])
    return frozenset(duplicates)


def _id_hashes(shard: str) -> tuple[int, np.ndarray, np.ndarray]:
    """(rows, int64 rows that have an id, their uint64 id hashes) of one input shard."""
    try:
        ids = pq.read_table(shard, columns=["id"])
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{shard}: unreadable manifest shard: {err}") from None
    decoded = [decode_id(value)[0] for value in as_binary(ids, ["id"])["id"].to_pylist()]
    kept = [row for row, item_id in enumerate(decoded) if item_id is not None]
    hashes = np.fromiter((_id_hash(decoded[row]) for row in kept), np.uint64, len(kept))
    return len(decoded), np.asarray(kept, np.int64), hashes


def _id_hash(item_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(item_id.encode("utf-8"), digest_size=8).digest(), "little")


@functools.lru_cache(maxsize=2)
def _read_shard(path: str) -> pa.Table:
    """One input shard, cached: consecutive output shards usually cut the same input shard."""
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{path}: unreadable manifest shard: {err}") from None


class CorpusWriter:
    """Appends validated (id, text, image) rows to an Arrow IPC file, atomically on close.

    Use it as a context manager: leaving the block normally commits the file; an exception closes the
    writer and removes the temporary file, so a failed build leaves neither an open handle nor a temp file.
    """

    def __init__(self, path: str | Path, batch_rows: int = 8192):
        self.path = Path(path)
        self.batch_rows = batch_rows
        self.rows = 0
        self._buffer: dict[str, list[str]] = {"id": [], "text": [], "image": []}
        with contextlib.ExitStack() as stack:  # unwound (temp file removed) if opening the writer fails
            self._tmp = stack.enter_context(atomic_path(self.path))
            self._writer = stack.enter_context(pa.ipc.new_file(str(self._tmp), CORPUS_SCHEMA))
            self._stack = stack.pop_all()

    def __enter__(self) -> "CorpusWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort(exc_type, exc, tb)

    def append(self, item_id: str, text: str, image: str) -> None:
        self._buffer["id"].append(item_id)
        self._buffer["text"].append(text)
        self._buffer["image"].append(image)
        self.rows += 1
        if len(self._buffer["id"]) >= self.batch_rows:
            self._flush()

    def _flush(self) -> None:
        if self._buffer["id"]:
            self._writer.write_batch(pa.record_batch(self._buffer, schema=CORPUS_SCHEMA))
            self._buffer = {"id": [], "text": [], "image": []}

    def close(self) -> None:
        """Write the buffered rows and commit the file (a no-op once closed or aborted)."""
        try:
            self._flush()
        except BaseException as err:
            self.abort(type(err), err, err.__traceback__)
            raise
        self._stack.close()  # closes the Arrow writer, then renames the temporary file onto `path`

    def abort(self, exc_type=None, exc=None, tb=None) -> None:
        """Close the writer and remove the temporary file; `path` is left as it was."""
        self._buffer = {"id": [], "text": [], "image": []}
        exc = exc or RuntimeError(f"{self.path}: write aborted")
        try:
            self._stack.__exit__(exc_type or type(exc), exc, tb)
        except BaseException as raised:
            if raised is not exc:
                raise


class CorpusStore:
    """Memory-mapped (id, text, image) rows of one index shard."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(
                f"{self.path}: corpus store missing; the index is incomplete, rebuild with `vimi index`"
            )
        self.table = pa.ipc.open_file(pa.memory_map(str(self.path), "r")).read_all()

    def __len__(self) -> int:
        return self.table.num_rows

    def take(self, rows: list[int]) -> list[dict]:
        return self.table.take(pa.array(rows, type=pa.int64())).to_pylist()

    def texts(self, batch_rows: int = 8192) -> Iterator[list[str]]:
        for batch in self.table.column("text").chunks:
            for start in range(0, len(batch), batch_rows):
                yield batch.slice(start, batch_rows).to_pylist()
