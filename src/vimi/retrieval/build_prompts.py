"""build-prompts: turn a video-text dataset into a multimodal-prompt dataset by retrieval (paper step 1).

For every video caption, the top-K memory pairs (BM25 with the caption as query) become the
interleaved prompt [text_1, <image_1>, ..., text_K, <image_K>, "+", caption]. A row's `prompt` is
the JSON of `vimi.prompt.MultimodalPrompt.to_dict()` (task "pretrain"; segments
{"type": "text", "text"} / {"type": "image", "path"}), media paths relative to the output folder.

Output shard i covers the fixed input rows [i * shard_size, (i + 1) * shard_size), is written
atomically and then marked done (`part-XXXXX.done.json`, with its skips and counters); a re-run
of the same command skips done shards, so a killed job resumes without redoing or duplicating
work and ends with the same bytes as an uninterrupted run. `manifest.json` is written last.
"""

import json
import logging
import math
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from vimi.config import RetrievalConfig
from vimi.data.manifest import count_rows, manifest_root, shard_paths, write_index, write_shard
from vimi.data.resumable import done_marker, shard_name, start_or_resume
from vimi.errors import ConfigError, MediaError
from vimi.retrieval.corpus import (
    check_columns,
    decode_id,
    find_duplicate_rows,
    read_row_range,
    resolve_media,
)
from vimi.retrieval.executors import map_tasks
from vimi.retrieval.filters import HitFilter, image_hash, video_frame_hashes
from vimi.retrieval.report import SkipLog, write_report
from vimi.retrieval.retrieve import cached_index
from vimi.retrieval.sharded import Hit, ShardedIndex, read_index_meta
from vimi.retrieval.tokenize import decode_text
from vimi.utils.atomic import atomic_path, write_json_atomic

log = logging.getLogger(__name__)

OWN_COLUMNS = ("id", "caption", "video", "prompt", "hit_ids", "hit_scores")
_IMAGE_SLOT = re.compile("\x00(\\d+)\x00")


@dataclass
class PromptJob:
    """Everything a worker needs to write one output shard (picklable for Ray)."""

    videos: str
    index: str
    out: str
    cfg: RetrievalConfig
    input_rows: int
    duplicate_rows: frozenset[int] = field(default_factory=frozenset)
    """Input rows whose id repeats an earlier row's (found in one pass over the id column)."""
    copy_media: bool = False

    @property
    def num_shards(self) -> int:
        return math.ceil(self.input_rows / self.cfg.shard_size)

    def rows_of(self, shard: int) -> tuple[int, int]:
        start = shard * self.cfg.shard_size
        return start, min(start + self.cfg.shard_size, self.input_rows)

    def signature(self) -> dict:
        """What must match for a resumed run to continue this job's shards."""
        return {
            "videos": self.videos,
            "index": self.index,
            "input_rows": self.input_rows,
            "copy_media": self.copy_media,
            "retrieval": asdict(self.cfg) | {"executor": None, "ray_address": None, "threads": None},
        }


def render_prompt(hits: list[Hit], caption: str, images: list[str], cfg: RetrievalConfig) -> list[dict]:
    """Interleaved segments [{"type": "text", "text"} | {"type": "image", "path"}] from the templates."""
    if "{caption}" not in cfg.template:
        raise ConfigError(f"retrieval.template={cfg.template!r} must contain {{caption}}")
    if "<image>" not in cfg.example_template:
        raise ConfigError(f"retrieval.example_template={cfg.example_template!r} must contain <image>")
    if not hits:
        return [{"type": "text", "text": caption}]
    # Images become sentinels before any user text is inserted, so a caption that happens to contain
    # "<image>" or "{caption}" stays text.
    examples = " ".join(
        cfg.example_template.replace("<image>", f"\x00{i}\x00").replace("{text}", hit.text)
        for i, hit in enumerate(hits)
    )
    rendered = cfg.template.replace("{examples}", examples).replace("{caption}", caption)
    segments, pieces = [], _IMAGE_SLOT.split(rendered)
    for j, piece in enumerate(pieces):
        if j % 2:
            segments.append({"type": "image", "path": images[int(piece)]})
        elif piece.strip():
            segments.append({"type": "text", "text": " ".join(piece.split())})
    return segments


def output_schema(videos: str | Path) -> pa.Schema:
    """Our columns, then the video rows' other columns passed through with their types."""
    source = pq.ParquetFile(shard_paths(videos)[0]).schema_arrow
    own = [
        ("id", pa.string()),
        ("caption", pa.string()),
        ("video", pa.string()),
        ("prompt", pa.string()),
        ("hit_ids", pa.list_(pa.string())),
        ("hit_scores", pa.list_(pa.float32())),
    ]
    return pa.schema(own + [f for f in source if f.name not in OWN_COLUMNS])


def _media_value(path: str, out: Path, copy: bool, subdir: str, name: str) -> str:
    """A media path for an output row: relative to the output folder, copied into it if asked."""
    if copy:
        target = out / "media" / subdir / f"{name}{Path(path).suffix}"
        if not target.is_file():
            with atomic_path(target) as tmp:
                shutil.copyfile(path, tmp)
        path = str(target)
    return os.path.relpath(path, out)


class _Ahead:
    """`compute(item)` for many items, run ahead in a thread pool in chunks (one job per item would cost
    more in futures than a small image takes to hash). A chunk the pool has not started when its result
    is asked for is computed by the caller instead of waited for behind the queue."""

    def __init__(self, pool: ThreadPoolExecutor, compute: Callable, items: list, chunk: int):
        self.compute = compute
        self.chunks: list[tuple[list, Future]] = []
        self.chunk_of: dict = {}
        for start in range(0, len(items), chunk):
            part = items[start : start + chunk]
            self.chunks.append((part, pool.submit(self._run, part)))
            self.chunk_of.update(dict.fromkeys(part, len(self.chunks) - 1))
        self.done: dict[int, dict] = {}

    def _run(self, part: list) -> dict:
        out = {}
        for item in part:
            try:
                out[item] = self.compute(item)
            except MediaError as err:  # kept as the item's result, raised where it is asked for
                out[item] = err
        return out

    def get(self, item):
        """The item's result (an item never submitted is computed now); a MediaError is raised."""
        if item not in self.chunk_of:
            return self.compute(item)
        c = self.chunk_of[item]
        if c not in self.done:
            part, job = self.chunks[c]
            self.done[c] = self._run(part) if job.cancel() else job.result()
        result = self.done[c][item]
        if isinstance(result, MediaError):
            raise result.with_traceback(None)  # the same error may be raised for many queries
        return result


def _read_rows(job: PromptJob, shard: int, skips: SkipLog) -> list[tuple[int, dict, str, str, str]]:
    """(row, record, id, caption, video path) of the shard's valid input rows; the others become skips."""
    start = job.rows_of(shard)[0]
    table = read_row_range(job.videos, *job.rows_of(shard), binary_columns=["id", "caption", "video"])
    root = manifest_root(job.videos)
    valid = []
    for offset, record in enumerate(table.to_pylist()):
        row = start + offset
        item_id, reason = decode_id(record["id"])
        caption, caption_reason = decode_text(record["caption"])
        video, video_reason = resolve_media(root, record["video"])
        if row in job.duplicate_rows:
            reason = reason or f"duplicate_id: {item_id} appears in an earlier row"
        reason = reason or caption_reason or video_reason
        if reason:
            skips.skip("videos", row, item_id, reason)
        else:
            valid.append((row, record, item_id, caption, video))
    return valid


def process_shard(job: PromptJob, shard: int, index: ShardedIndex) -> dict:
    """Write output shard `shard` (unless already done) and return its done record.

    Decoding (target videos for the leakage filter, hit images for their hashes) runs in a thread pool
    of `index.threads` workers, since PyAV and PIL release the GIL while decoding: the videos are
    queued before the BM25 search so they decode while it runs, the hit images (each distinct path
    once per shard) right after it; the main thread filters and writes rows in input order meanwhile.
    """
    out = Path(job.out)
    marker = done_marker(out, shard)
    if marker.is_file():
        return json.loads(marker.read_text(encoding="utf-8"))
    cfg = job.cfg
    skips, counters = SkipLog(log), Counter()
    valid = _read_rows(job, shard, skips)
    hit_filter = HitFilter(cfg.k, cfg.min_score, cfg.dedup_hamming)
    schema = output_schema(job.videos)
    passthrough = [f.name for f in schema][len(OWN_COLUMNS) :]
    records = []
    pool = ThreadPoolExecutor(max(index.threads, 1))
    try:
        videos = list(dict.fromkeys(v[4] for v in valid)) if cfg.dedup_frames > 0 else []
        frames_of = _Ahead(pool, lambda video: video_frame_hashes(video, cfg.dedup_frames), videos, 8)
        hits_per_query = index.hits([v[3] for v in valid], cfg.k * max(cfg.oversample, 1))
        to_hash = [p for hits in hits_per_query for p in hit_filter.images_to_hash(hits, cfg.diversify)]
        hashes = _Ahead(pool, image_hash, list(dict.fromkeys(to_hash)), 32)  # each path once per shard
        for (row, record, item_id, caption, video), hits in zip(valid, hits_per_query):
            try:
                frames = frames_of.get(video) if cfg.dedup_frames > 0 else []
            except MediaError as err:
                skips.skip("videos", row, item_id, f"unreadable_video: {err}")
                continue
            if cfg.diversify:
                terms = set(index.tokenizer.tokenize(caption))
                kept, dropped = hit_filter.select(hits, frames, terms, index.tokenizer.tokenize, hashes.get)
            else:
                kept, dropped = hit_filter.select(hits, frames, hash_image=hashes.get)
            for hit, why in dropped:
                counters[f"hits_dropped_{why.split(':', 1)[0]}"] += 1
                if why.startswith("unreadable_image"):
                    skips.skip("memory", hit.row, hit.id, why)
            counters["rows_without_hits"] += not kept
            counters["hits"] += len(kept)
            images = [_media_value(h.image, out, job.copy_media, "images", f"m{h.row}") for h in kept]
            records.append(
                {
                    "id": item_id,
                    "caption": caption,
                    "video": _media_value(video, out, job.copy_media, "videos", f"v{row}"),
                    "prompt": json.dumps(
                        {"task": "pretrain", "segments": render_prompt(kept, caption, images, cfg)},
                        ensure_ascii=False,
                    ),
                    "hit_ids": [h.id for h in kept],
                    "hit_scores": [h.score for h in kept],
                    **{name: record[name] for name in passthrough},
                }
            )
    finally:
        pool.shutdown(cancel_futures=True)  # an error above leaves no decoding running behind it
    write_shard(out / f"{shard_name(shard)}.parquet", records, schema)
    done = {
        "file": f"{shard_name(shard)}.parquet",
        "rows": len(records),
        "skips": skips.records,
        "counters": dict(sorted(counters.items())),
    }
    write_json_atomic(marker, done)
    return done


def _run_local(job: PromptJob, shards: list[int], progress: bool = True) -> None:
    """Shards one after another; each shard's queries go to bm25s in one batch over `cfg.threads` threads."""
    if not shards:
        return
    index = ShardedIndex(job.index, threads=job.cfg.threads)
    for shard in tqdm(shards, desc="build-prompts", unit="shard", disable=not progress):
        process_shard(job, shard, index)


def _ray_shard(shard: int, job: PromptJob) -> dict:
    """One Ray task: the index is opened once per worker process (memory-mapped) and reused."""
    index = cached_index(job.index)
    index.threads = 1  # one CPU per task; Ray parallelises across tasks
    return process_shard(job, shard, index)


def build_prompts(
    videos: str | Path,
    index: str | Path,
    out: str | Path,
    cfg: RetrievalConfig,
    copy_media: bool = False,
    progress: bool = True,
) -> Path:
    """Run (or resume) the job; returns the output manifest folder."""
    videos, index, out = Path(videos).resolve(), Path(index).resolve(), Path(out).resolve()
    check_columns(videos, ["id", "caption", "video"])
    read_index_meta(index)
    if cfg.k < 1 or cfg.shard_size < 1:
        raise ConfigError(f"retrieval.k={cfg.k} and retrieval.shard_size={cfg.shard_size} must be >= 1")
    render_prompt([], "", [], cfg)  # template errors before any work
    job = PromptJob(
        str(videos), str(index), str(out), cfg, count_rows(videos), find_duplicate_rows(videos), copy_media
    )
    start_or_resume(out, job.signature(), "build-prompts job")
    todo = [s for s in range(job.num_shards) if not done_marker(out, s).is_file()]
    log.info("build-prompts: %d shard(s), %d to do, executor %s", job.num_shards, len(todo), cfg.executor)
    if cfg.executor == "ray":
        map_tasks(_ray_shard, todo, (job,), executor="ray", address=cfg.ray_address)
    else:
        _run_local(job, todo, progress)
    dones = [json.loads(done_marker(out, s).read_text(encoding="utf-8")) for s in range(job.num_shards)]
    skips, counters = [r for d in dones for r in d["skips"]], Counter()
    for d in dones:
        counters.update(d["counters"])
    rows = sum(d["rows"] for d in dones)
    write_report(out, "build_prompts", skips, {"input_rows": job.input_rows, "rows": rows, **dict(counters)})
    write_index(
        out,
        [{"file": d["file"], "rows": d["rows"]} for d in dones],
        {"kind": "multimodal-prompts", "index": str(index), "videos": str(videos), "k": cfg.k},
    )
    log.info("build-prompts: %d of %d rows written to %s (%d skipped)", rows, job.input_rows, out, len(skips))
    return out
