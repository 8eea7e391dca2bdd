"""Dataset manifests: sharded Parquet tables plus a `manifest.json` index that marks completion.

Why Parquet: it is typed (a caption stays a string, a box list stays floats), compressed, and
readable one row group at a time, so a 500M-row memory streams in bounded memory; pyarrow is
already a dependency. Media (images, videos) stay as files beside the manifest and rows hold paths
relative to the manifest folder. WebDataset tar shards (`vimi.data.webdataset_shards`) are the
at-scale option when media should travel inside the shards.

Layout of a manifest folder:

    DIR/manifest.json        {"format": "vimi-manifest", "version": 1, "shards": [{"file", "rows"}], "rows": N}
    DIR/part-00000.parquet   one shard; written to a temp file and renamed, so a shard file is complete
    DIR/...                  media referenced by rows (relative paths)

`manifest.json` is written last (atomically), so a folder without it is an interrupted write and is
refused by readers instead of being read as a complete dataset.
"""

import bisect
import itertools
import logging
import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from vimi.errors import DataError
from vimi.utils.atomic import atomic_path, write_json_atomic
from vimi.utils.files import read_json

log = logging.getLogger(__name__)

INDEX_FILE = "manifest.json"
FORMAT = "vimi-manifest"


def write_shard(path: str | Path, records: list[dict], schema: pa.Schema | None = None) -> None:
    """Write one Parquet shard atomically (temp file + rename)."""
    table = pa.Table.from_pylist(records, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=min(max(len(records), 1), 4096))


class ManifestWriter:
    """Streams records into `shard_size`-row Parquet shards; `close()` writes the index.

    Used as a context manager, an exception inside the block leaves the shards written so far but
    no index, so the folder reads as incomplete rather than as a shorter dataset.
    """

    def __init__(
        self,
        out_dir: str | Path,
        shard_size: int = 10_000,
        schema: pa.Schema | None = None,
        prefix: str = "part",
        extra: dict[str, Any] | None = None,
    ):
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # Rewriting a folder: drop the old index first, else a failed rewrite would leave it describing
        # shards that are now partly replaced.
        (self.out_dir / INDEX_FILE).unlink(missing_ok=True)
        self.shard_size = shard_size
        self.schema = schema
        self._infer_schema = schema is None
        self.prefix = prefix
        self.extra = extra or {}
        self.shards: list[dict] = []
        self._buffer: list[dict] = []

    def write(self, record: dict) -> None:
        self._buffer.append(record)
        if len(self._buffer) >= self.shard_size:
            self._flush()

    def write_many(self, records: Iterable[dict]) -> None:
        for record in records:
            self.write(record)

    def _flush(self) -> None:
        if not self._buffer:
            return
        name = f"{self.prefix}-{len(self.shards):05d}.parquet"
        try:
            if self.schema is None:
                # The first shard fixes the schema so that every later shard has identical columns.
                self.schema = pa.Table.from_pylist(self._buffer).schema
            elif self._infer_schema:
                self.schema = _refine_null_types(self.schema, self._buffer)
            write_shard(self.out_dir / name, self._buffer, self.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise DataError(
                f"{self.out_dir / name}: records do not match the columns of earlier shards ({err}); "
                "give every record the same types or pass schema= to ManifestWriter"
            ) from None
        self.shards.append({"file": name, "rows": len(self._buffer)})
        self._buffer = []

    def close(self) -> Path:
        self._flush()
        return write_index(self.out_dir, self.shards, self.extra)

    def __enter__(self) -> "ManifestWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


def _refine_null_types(schema: pa.Schema, records: list[dict]) -> pa.Schema:
    """Type the columns that were all-null so far (None, []) from records that now hold values."""
    if not any(_contains_null(field.type) for field in schema):
        return schema
    seen = pa.Table.from_pylist(records).schema
    return pa.schema(
        seen.field(field.name) if _contains_null(field.type) and field.name in seen.names else field
        for field in schema
    )


def _contains_null(dtype: pa.DataType) -> bool:
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return _contains_null(dtype.value_type)
    return pa.types.is_null(dtype)


def write_index(out_dir: str | Path, shards: list[dict], extra: dict[str, Any] | None = None) -> Path:
    """Write `manifest.json` for shards that already exist (the completion marker)."""
    out_dir = Path(out_dir)
    index = {
        "format": FORMAT,
        "version": 1,
        "shards": shards,
        "rows": sum(s["rows"] for s in shards),
        **(extra or {}),
    }
    write_json_atomic(out_dir / INDEX_FILE, index)
    return out_dir / INDEX_FILE


def read_index(path: str | Path) -> dict:
    """Read a manifest folder's index; a folder without one is an interrupted or foreign write."""
    path = Path(path)
    index_path = path / INDEX_FILE if path.is_dir() else path
    if not index_path.is_file():
        if path.is_dir():
            raise DataError(
                f"{path}: no {INDEX_FILE}; the dataset is incomplete (an interrupted write?) or not a vimi manifest"
            )
        raise DataError(f"dataset not found: {path}")
    return read_json(index_path, "vimi manifest index", expect_format=FORMAT)


def shard_paths(path: str | Path) -> list[Path]:
    """The Parquet shards of a manifest folder (or a single .parquet file)."""
    path = Path(path)
    if path.suffix == ".parquet":
        if not path.is_file():
            raise DataError(f"dataset shard not found: {path}")
        return [path]
    root = path if path.is_dir() else path.parent
    shards = [root / s["file"] for s in read_index(path)["shards"]]
    missing = [s for s in shards if not s.is_file()]
    if missing:
        raise DataError(
            f"{root}: {len(missing)} shard(s) listed in {INDEX_FILE} are missing, e.g. {missing[0].name}"
        )
    return shards


def manifest_root(path: str | Path) -> Path:
    """The folder that relative media paths in the rows are resolved against."""
    path = Path(path)
    return path if path.is_dir() else path.parent


def count_rows(path: str | Path) -> int:
    """Rows of a manifest folder (from its index) or of one shard (from its Parquet footer)."""
    path = Path(path)
    if path.suffix != ".parquet":
        return int(read_index(path)["rows"])
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{path}: unreadable manifest shard: {err}") from None


def iter_records(
    path: str | Path, columns: list[str] | None = None, batch_rows: int = 1024
) -> Iterator[dict]:
    """Stream every row of a manifest in order, one record batch in memory at a time."""
    for shard in shard_paths(path):
        yield from _iter_shard(shard, columns, batch_rows)


def _iter_shard(shard: Path, columns: list[str] | None, batch_rows: int) -> Iterator[dict]:
    try:
        parquet = pq.ParquetFile(shard)
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
            yield from batch.to_pylist()
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{shard}: unreadable manifest shard: {err}") from None


class ManifestRows:
    """A manifest's rows kept as memory-mapped Arrow tables (one per shard); row i becomes a dict on access.

    Why not a list of dicts: every rank and DataLoader worker would hold every row as Python objects,
    and refcount updates on them defeat fork's copy-on-write. Arrow buffers are never written, so
    forked workers share them. Only the `needed` and the present `optional` columns are read.
    """

    def __init__(self, path: str | Path, what: str, needed: tuple[str, ...], optional: tuple[str, ...] = ()):
        self.path = Path(path)
        names = require_columns(path, what, needed)
        self.columns = [c for c in (*needed, *optional) if c in names]
        tables = [_read_columns(shard, self.columns) for shard in shard_paths(path)]
        self.tables = [table for table in tables if table.num_rows]
        self.ends = list(
            itertools.accumulate(table.num_rows for table in self.tables)
        )  # cumulative row counts

    def __len__(self) -> int:
        return self.ends[-1]

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} of {self.path} ({len(self)} rows)")
        shard = bisect.bisect_right(self.ends, i)
        start = self.ends[shard - 1] if shard else 0
        return self.tables[shard].slice(i - start, 1).to_pylist()[0]


def require_columns(path: str | Path, what: str, needed: tuple[str, ...]) -> list[str]:
    """The column names of a manifest; DataError if it has no rows or lacks a column a task needs."""
    shards = shard_paths(path)
    if not sum(count_rows(shard) for shard in shards):
        raise DataError(f"{path}: the {what} manifest has no rows")
    try:
        names = pq.read_schema(shards[0]).names
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{shards[0]}: unreadable manifest shard: {err}") from None
    missing = [c for c in needed if c not in names]
    if missing:
        raise DataError(
            f"{path}: the {what} manifest lacks column(s) {', '.join(missing)}; has {', '.join(names)}"
        )
    return names


def _read_columns(shard: Path, columns: list[str]) -> pa.Table:
    """The given columns of one Parquet shard, memory-mapped."""
    try:
        return pq.read_table(shard, columns=columns, memory_map=True)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{shard}: unreadable manifest shard: {err}") from None


def partition(rank: int, world_size: int, worker_id: int, num_workers: int) -> tuple[int, int]:
    """(this reader's index, number of readers) over all ranks x DataLoader workers."""
    return rank * num_workers + worker_id, world_size * num_workers


class ManifestDataset(torch.utils.data.IterableDataset):
    """Streams manifest rows, split without overlap across distributed ranks and DataLoader workers.

    With at least as many shards as readers, each reader takes whole shards (shard i goes to reader
    i % readers); otherwise every reader scans all shards and keeps rows with global index
    i % readers == reader. Shard order and the shuffle buffer depend only on (seed, epoch), so a run
    is deterministic for a seed, whatever the number of readers.
    """

    def __init__(
        self,
        path: str | Path,
        shuffle: bool = False,
        seed: int = 0,
        shuffle_buffer: int = 1000,
        columns: list[str] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        super().__init__()
        self.path = Path(path)
        self.shards = shard_paths(path)
        self.root = manifest_root(path)
        self.shuffle = shuffle
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self.columns = columns
        self.rank, self.world_size = _dist_rank(rank, world_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        worker_id, num_workers = (info.id, info.num_workers) if info else (0, 1)
        reader, readers = partition(self.rank, self.world_size, worker_id, num_workers)
        rng = random.Random(f"{self.seed}/{self.epoch}/{reader}")
        shards = list(self.shards)
        if self.shuffle:
            random.Random(f"{self.seed}/{self.epoch}").shuffle(shards)
        rows = self._rows_for(reader, readers, shards)
        yield from _buffer_shuffle(rows, self.shuffle_buffer, rng) if self.shuffle else rows

    def _rows_for(self, reader: int, readers: int, shards: list[Path]) -> Iterator[dict]:
        if len(shards) >= readers:
            for shard in shards[reader::readers]:
                yield from _iter_shard(shard, self.columns, 1024)
        else:
            index = 0
            for shard in shards:
                for row in _iter_shard(shard, self.columns, 1024):
                    if index % readers == reader:
                        yield row
                    index += 1


def _buffer_shuffle(rows: Iterable[dict], size: int, rng: random.Random) -> Iterator[dict]:
    """Approximate shuffle in bounded memory (the WebDataset / tf.data approach)."""
    buffer: list[dict] = []
    for row in rows:
        if len(buffer) < size:
            buffer.append(row)
            continue
        i = rng.randrange(len(buffer))
        yield buffer[i]
        buffer[i] = row
    rng.shuffle(buffer)
    yield from buffer


def _dist_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return rank, world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
