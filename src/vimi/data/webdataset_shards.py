"""WebDataset tar shards: the at-scale form of a manifest, with media bytes inside the shards.

A Parquet manifest keeps media as files beside it; at scale (object stores, many nodes) reading
millions of small files is slow, so `export_webdataset` packs each row's media into tar shards that
stream sequentially. Layout of an export folder:

    OUT/shard-00000.tar      samples: KEY.json (the row) + KEY.<column>.<suffix> (media bytes)
    OUT/wds_index.json       {"format": "vimi-webdataset", "shards": [{"file", "samples"}], ...}

Each shard is written to a temp file and renamed; the index is written last, so a folder without it
is an interrupted export and `webdataset_reader` refuses it.
"""

import functools
import itertools
import json
import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import webdataset as wds

from vimi.data.manifest import iter_records, manifest_root
from vimi.errors import DataError, MediaError
from vimi.utils.atomic import atomic_path, write_json_atomic
from vimi.utils.files import read_json

INDEX_FILE = "wds_index.json"
FORMAT = "vimi-webdataset"


def export_webdataset(
    manifest_dir: str | Path,
    out_dir: str | Path,
    media_columns: list[str],
    shard_size: int = 1000,
    prefix: str = "shard",
) -> Path:
    """Pack a manifest and the media its `media_columns` point to into tar shards; returns the index path."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / INDEX_FILE).unlink(missing_ok=True)  # the folder reads as incomplete until we finish
    root = manifest_root(manifest_dir)
    shards: list[dict] = []
    batch: list[dict] = []
    total = 0
    for record in iter_records(manifest_dir):
        batch.append(_sample(record, total, root, media_columns))
        total += 1
        if len(batch) == shard_size:
            shards.append(_write_tar(out_dir / f"{prefix}-{len(shards):05d}.tar", batch))
            batch = []
    if batch:
        shards.append(_write_tar(out_dir / f"{prefix}-{len(shards):05d}.tar", batch))
    index = {
        "format": FORMAT,
        "version": 1,
        "shards": shards,
        "samples": total,
        "media_columns": media_columns,
    }
    write_json_atomic(out_dir / INDEX_FILE, index)
    return out_dir / INDEX_FILE


def _sample(record: dict, position: int, root: Path, media_columns: list[str]) -> dict:
    """One tar sample: the row as JSON plus the bytes of each media file it references."""
    # Keys must hold no dots (WebDataset splits key and field at the first dot), so use the position.
    sample: dict = {"__key__": f"{position:09d}", "json": json.dumps(record).encode("utf-8")}
    for column in media_columns:
        if column not in record:
            raise DataError(
                f"{root}: media column {column!r} is not in the manifest (columns: {sorted(record)})"
            )
        relative = record[column]
        if relative is None:
            continue  # optional media (e.g. a row without a subject image)
        media_path = root / relative
        if not media_path.is_file():
            raise MediaError(f"{media_path}: file not found (row {position}, column {column!r})")
        sample[f"{column}{media_path.suffix.lower() or '.bin'}"] = media_path.read_bytes()
    return sample


def _write_tar(path: Path, samples: list[dict]) -> dict:
    with atomic_path(path) as tmp, wds.TarWriter(str(tmp), mtime=0.0) as writer:  # mtime 0: reproducible tars
        for sample in samples:
            writer.write(sample)
    return {"file": path.name, "samples": len(samples)}


def shard_urls(pattern_or_dir: str | Path) -> list[str]:
    """The shard paths of an export folder (its index must exist), or a brace pattern expanded."""
    path = Path(pattern_or_dir)
    if path.is_dir():
        index_path = path / INDEX_FILE
        if not index_path.is_file():
            raise DataError(
                f"{path}: no {INDEX_FILE}; the export is incomplete (interrupted?) or not a vimi export"
            )
        index = read_json(index_path, "vimi WebDataset index", expect_format=FORMAT)
        urls = [str(path / shard["file"]) for shard in index["shards"]]
    else:
        urls = list(wds.shardlists.expand_urls(str(pattern_or_dir)))
    missing = [u for u in urls if "://" not in u and not Path(u).is_file()]
    if missing:
        raise DataError(f"{pattern_or_dir}: {len(missing)} shard(s) missing, e.g. {missing[0]}")
    return urls


def webdataset_reader(
    pattern_or_dir: str | Path,
    shuffle: bool = False,
    seed: int = 0,
    shuffle_buffer: int = 1000,
    rank: int | None = None,
    world_size: int | None = None,
) -> wds.WebDataset:
    """Stream samples as dicts: the row's columns, with each exported media column holding the file's bytes.

    Shards are split across distributed ranks (explicit `rank`/`world_size`, else torch.distributed or
    RANK/WORLD_SIZE) and then across DataLoader workers, so no two readers see the same shard; use at
    least ranks x workers shards. Shuffling (shard order and a sample buffer) is deterministic per seed.
    Decode media with `read_video(sample["video"], ...)` / `read_image(sample["image"])`, which take bytes.
    """
    urls = shard_urls(pattern_or_dir)
    if (rank is None) != (world_size is None):
        raise ValueError("pass both rank and world_size, or neither")
    nodesplitter = wds.split_by_node if rank is None else _split_by_rank(rank, world_size)
    dataset = wds.WebDataset(
        urls,
        shardshuffle=len(urls) if shuffle else False,
        detshuffle=True,
        seed=seed,
        nodesplitter=nodesplitter,
        workersplitter=wds.split_by_worker,
        empty_check=False,  # a reader with no shard (more readers than shards) yields nothing
    )
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, rng=random.Random(seed))
    return dataset.map(_to_record)


def _split_by_rank(rank: int, world_size: int) -> Callable[[Iterable], Iterator]:
    """A picklable node splitter (DataLoader workers may be spawned) for an explicit rank."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    return functools.partial(_every_nth, offset=rank, step=world_size)


def _every_nth(items: Iterable, offset: int, step: int) -> Iterator:
    return itertools.islice(items, offset, None, step)


def _to_record(sample: dict) -> dict:
    """Tar fields -> the original row, media columns replaced by their bytes."""
    record = json.loads(sample["json"])
    for field, value in sample.items():
        if field == "json" or field.startswith("__"):
            continue  # __key__, __url__, ...: WebDataset's bookkeeping
        column = field.split(".", 1)[0]
        record[column] = value
    record["__key__"] = sample["__key__"]
    return record
