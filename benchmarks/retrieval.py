"""Speed of build-prompts over a >= 1M-pair memory, against raw bm25s and rank_bm25, in one run.

Three measurements on the same captions:
  ours       `build_prompts` end to end: tokenize, retrieve K*oversample candidates per caption from
             the (memory-mapped) index, resolve hits, filter (hash every hit image; by default also
             decode and hash 8 frames of every video), write the Parquet shards + markers. Videos and
             hit images are decoded in a thread pool of --threads workers, overlapping the search and
             the filtering. Each run starts with an empty image-hash cache.
  bm25s      raw `bm25s.BM25.retrieve` on the same saved index files (plain bm25s class, loaded with
             mmap=True), pre-tokenized queries, same k and n_threads (numpy backend: numba/jax are
             not installed). Its top-k is np.argpartition over the whole, mostly-zero score vector,
             which numpy does pathologically slowly on such data; vimi's top-k (bm25.TieStableBM25)
             selects among the matched documents only, which is why vimi is faster than "raw" here.
  rank_bm25  `BM25Okapi.get_scores` + top-k on a 10k-pair sample (it is too slow for 1M pairs); its
             per-query cost grows linearly with the corpus, so it is also shown scaled to the memory.
Targets: ours >= 0.9x bm25s, ours >= 100x rank_bm25 (at equal corpus size).

The memory (--pairs N, default 1M) is synthetic GroundedWorld-like text (made-up subject names x 8
images, scenes, distractors); every row has its own image path (hard links to 256 distinct PNGs, so
1M rows cost no disk). It is built once and cached under --cache, as is the index. --world DIR uses
a GroundedWorld folder (memory/ and videos/train/) instead.

    .venv/bin/python benchmarks/retrieval.py                 # 1M pairs, 2000 captions
    .venv/bin/python benchmarks/retrieval.py --pairs 200000 --queries 500
"""

import argparse
import logging
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import bm25s
import numpy as np
import torch
from PIL import Image

from vimi.config import RetrievalConfig
from vimi.data.manifest import ManifestWriter, count_rows, iter_records
from vimi.data.video_io import write_mp4
from vimi.retrieval import build_index, build_prompts, open_index
from vimi.retrieval.filters import image_hash
from vimi.retrieval.tokenize import TextTokenizer

SCENES = [
    "meadow",
    "desert",
    "ocean",
    "snowfield",
    "forest",
    "city street",
    "lava field",
    "night sky",
    "beach",
    "kitchen",
]
MOTIONS = ["moves left slowly", "spins quickly", "bounces", "grows", "shrinks", "moves up", "stays still"]
NOUNS = [
    "teapot",
    "lamp",
    "chair",
    "bicycle",
    "guitar",
    "umbrella",
    "kettle",
    "clock",
    "vase",
    "boot",
    "helmet",
    "drum",
    "candle",
    "violin",
    "ladder",
    "bucket",
    "anchor",
    "compass",
    "lantern",
    "saddle",
]
ADJECTIVES = [
    "red",
    "green",
    "blue",
    "old",
    "shiny",
    "wooden",
    "striped",
    "tiny",
    "huge",
    "rusty",
    "bright",
    "dusty",
]
ONSETS = [
    "b",
    "d",
    "f",
    "g",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "z",
    "bl",
    "br",
    "dr",
    "fl",
    "gl",
    "gr",
    "kr",
    "pl",
    "sn",
    "st",
    "tr",
    "sk",
    "zh",
    "th",
]
VOWELS = ["a", "e", "i", "o", "u", "oo", "ee", "ai", "au"]
CODAS = ["", "n", "k", "t", "x", "m", "p", "l", "sh", "r", "nd"]


def made_up_names(count: int, rng: np.random.Generator) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        parts = [rng.choice(ONSETS) + rng.choice(VOWELS) for _ in range(2 + (rng.random() < 0.3))]
        names.add("".join(parts) + rng.choice(CODAS))
    return sorted(names)


def build_memory(root: Path, pairs: int, seed: int = 0) -> list[str]:
    """A GroundedWorld-like memory of `pairs` rows; returns the subject names."""
    rng = np.random.default_rng(seed)
    pool = root / "pool"
    pool.mkdir(parents=True, exist_ok=True)
    for i in range(256):
        coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((32, 32), Image.Resampling.BICUBIC).save(pool / f"{i}.png")
    names = made_up_names(max(pairs // 20, 1), rng)
    (root / "images").mkdir(exist_ok=True)
    with ManifestWriter(root, shard_size=100_000) as writer:
        for row in range(pairs):
            if row < len(names) * 8:
                scene = SCENES[int(rng.integers(len(SCENES)))]
                text = f"A photo of a {names[row // 8]} in the {scene}."
            elif row < len(names) * 8 + 80:
                text = f"A view of the {SCENES[row % len(SCENES)]}."
            else:
                text = (
                    f"A {ADJECTIVES[int(rng.integers(len(ADJECTIVES)))]} {NOUNS[int(rng.integers(len(NOUNS)))]} "
                    f"resting in the {SCENES[int(rng.integers(len(SCENES)))]}."
                )
            image = f"images/{row}.png"
            os.link(pool / f"{row % 256}.png", root / image)
            writer.write({"id": f"m{row}", "text": text, "image": image})
    return names


def build_videos(root: Path, names: list[str], count: int, seed: int = 1) -> None:
    """`count` captions naming one or two subjects; each row has its own (hard-linked) 8-frame clip."""
    rng = np.random.default_rng(seed)
    (root / "clips").mkdir(parents=True, exist_ok=True)
    for i in range(16):
        clip = torch.rand(3, 8, 32, 32, generator=torch.Generator().manual_seed(i)) * 2 - 1  # [C, T, H, W]
        write_mp4(clip, root / f"pool{i}.mp4")
    with ManifestWriter(root, shard_size=10_000) as writer:
        for i in range(count):
            picked = [names[int(j)] for j in rng.choice(len(names), 1 + (rng.random() < 0.3), replace=False)]
            motion, scene = MOTIONS[i % len(MOTIONS)], SCENES[int(rng.integers(len(SCENES)))]
            caption = f"A {picked[0]} {motion} in the {scene}" + (
                f" while a {picked[1]} bounces." if len(picked) > 1 else "."
            )
            os.link(root / f"pool{i % 16}.mp4", root / "clips" / f"{i}.mp4")
            writer.write({"id": f"v{i}", "caption": caption, "video": f"clips/{i}.mp4", "subjects": picked})


def time_raw_bm25s(
    index_dir: Path, captions: list[str], tokenizer: TextTokenizer, k: int, threads: int
) -> float:
    """Queries/s of plain bm25s retrieve on the same saved shard (pre-tokenized queries)."""
    retriever = bm25s.BM25.load(str(index_dir / "shard-00000" / "bm25"), mmap=True)
    tokens = tokenizer.tokenize_many(captions[:500])  # it can be slow: 500 queries give a stable rate
    retriever.retrieve(tokens[:20], k=k, n_threads=threads, show_progress=False)  # warm the page cache
    start = time.perf_counter()
    retriever.retrieve(tokens, k=k, n_threads=threads, show_progress=False)
    return len(tokens) / (time.perf_counter() - start)


def time_vimi_search(index_dir: Path, captions: list[str], k: int, threads: int) -> float:
    """Queries/s of vimi's ShardedIndex.search alone (tokenize + bm25s scoring + tie-stable top-k + merge)."""
    index = open_index(index_dir, threads)
    index.search(captions[:50], k)
    start = time.perf_counter()
    index.search(captions, k)
    return len(captions) / (time.perf_counter() - start)


def time_rank_bm25(memory: Path, captions: list[str], tokenizer: TextTokenizer, k: int, sample: int) -> float:
    """Queries/s of rank_bm25 BM25Okapi (+ top-k) over the first `sample` memory rows."""
    from rank_bm25 import BM25Okapi

    docs = [tokenizer.tokenize(r["text"]) for r, _ in zip(iter_records(memory, ["text"]), range(sample))]
    model = BM25Okapi(docs)
    queries = tokenizer.tokenize_many(captions[:200])
    start = time.perf_counter()
    for query in queries:
        np.argsort(model.get_scores(query))[::-1][:k]
    return len(queries) / (time.perf_counter() - start)


def time_build_prompts(videos: Path, index: Path, cfg: RetrievalConfig, rows: int) -> float:
    """Queries/s of a cold build-prompts run (the image-hash cache is emptied: no run reuses another's)."""
    out = Path(tempfile.mkdtemp(prefix="vimi-bench-"))
    image_hash.cache_clear()
    try:
        start = time.perf_counter()
        build_prompts(videos, index, out / "out", cfg, progress=False)
        return rows / (time.perf_counter() - start)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1_000_000, help="memory size (synthetic)")
    parser.add_argument("--queries", type=int, default=2000, help="video captions to build prompts for")
    parser.add_argument(
        "--world", default=None, help="a GroundedWorld folder instead of the synthetic memory"
    )
    parser.add_argument(
        "--cache", default="outputs/bench/retrieval", help="where memory and index are cached"
    )
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="query threads (0: all cores)")
    parser.add_argument("--rank-bm25-sample", type=int, default=10_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    threads = args.threads or os.cpu_count() or 1
    cache = Path(args.cache)
    if args.world:
        memory, videos = Path(args.world) / "memory", Path(args.world) / "videos" / "train"
        index = cache / f"index-world-{Path(args.world).name}"
    else:
        memory, videos, index = (
            cache / f"memory-{args.pairs}",
            cache / f"videos-{args.queries}-{args.pairs}",
            cache / f"index-{args.pairs}",
        )
        if not (memory / "manifest.json").is_file():
            shutil.rmtree(memory, ignore_errors=True)
            start = time.perf_counter()
            build_memory(memory, args.pairs)
            print(f"memory: {args.pairs} pairs written in {time.perf_counter() - start:.0f} s")
            shutil.rmtree(videos, ignore_errors=True)
        if not (videos / "manifest.json").is_file():
            shutil.rmtree(videos, ignore_errors=True)
            names = sorted(
                {
                    r["text"].split()[4]
                    for r, _ in zip(iter_records(memory, ["text"]), range(args.pairs))
                    if r["text"].startswith("A photo of a")
                }
            )
            build_videos(videos, names, args.queries)
    cfg = RetrievalConfig(k=args.k, threads=threads, shard_size=1000, dedup_frames=0)
    if not (index / "index.json").is_file():
        start = time.perf_counter()
        build_index(memory, index, cfg, progress=False)
        elapsed = time.perf_counter() - start
        print(f"index: built in {elapsed:.0f} s ({args.pairs / elapsed:,.0f} pairs/s)")
    captions = [r["caption"] for r in iter_records(videos, ["caption"])]
    tokenizer = TextTokenizer(cfg.stopwords, cfg.stemmer)
    candidates = cfg.k * cfg.oversample
    pairs = count_rows(memory)
    raw = time_raw_bm25s(index, captions, tokenizer, candidates, threads)
    search = time_vimi_search(index, captions, candidates, threads)
    ours = time_build_prompts(videos, index, cfg, len(captions))
    dedup = time_build_prompts(videos, index, replace(cfg, dedup_frames=8), len(captions))
    rank = time_rank_bm25(memory, captions, tokenizer, candidates, args.rank_bm25_sample)
    rank_scaled = rank * args.rank_bm25_sample / pairs
    print(
        f"memory {pairs:,} pairs, {len(captions):,} captions, k={cfg.k} ({candidates} candidates), "
        f"{threads} thread(s), cpu"
    )
    rows = [
        ("raw bm25s retrieve (pre-tokenized)", raw, ""),
        ("vimi index.search", search, f"{search / raw:6.1f}x bm25s  {search / rank_scaled:5.0f}x rank_bm25"),
        (
            "vimi build-prompts, no frame dedup",
            ours,
            f"{ours / raw:6.1f}x bm25s  {ours / rank_scaled:5.0f}x rank_bm25",
        ),
        (
            "vimi build-prompts, default (dedup)",
            dedup,
            f"{dedup / raw:6.1f}x bm25s  {dedup / rank_scaled:5.0f}x rank_bm25",
        ),
        (f"rank_bm25 on {args.rank_bm25_sample:,} pairs", rank, "measured"),
        (f"rank_bm25 scaled to {pairs:,} pairs", rank_scaled, "per-query cost is linear in the corpus size"),
    ]
    print("targets: build-prompts >= 0.9x bm25s, >= 100x rank_bm25 (at the memory's size)")
    for name, rate, note in rows:
        print(f"  {name:40s} {rate:10.2f} queries/s   {note}")


if __name__ == "__main__":
    main()
