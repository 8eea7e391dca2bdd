"""GroundedWorld speed: videos rendered per second into memory (single process), mp4 encodes per second,
and optionally the wall time of a whole preset build.

    .venv/bin/python benchmarks/world.py                       # 8x32x32 clips, the small preset's subjects
    .venv/bin/python benchmarks/world.py --frames 16 --size 64
    .venv/bin/python benchmarks/world.py --build small --out /tmp/world-bench
"""

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from vimi.config import WorldConfig
from vimi.data.world import SCENES, WorldRenderer, apply_preset, build_world, sample_world_subjects
from vimi.data.world.media import write_lossless_mp4
from vimi.data.world.videos import plan_videos


def bench_render(frames: int, size: int, videos: int, batch: int) -> tuple[float, float]:
    """(videos per wall second, videos per CPU second): plan poses/subjects/scenes + render uint8 frames + boxes.

    The CPU-second rate is the per-core speed even when other processes share the cores."""
    cfg = WorldConfig(num_frames=frames, height=size, width=size)
    subjects, _ = sample_world_subjects(cfg)
    renderer = WorldRenderer([s.appearance for s in subjects], size, size, cfg.seed, cfg.background_variants)
    pool = np.arange(cfg.num_train_subjects)
    rng = np.random.default_rng(0)
    run = lambda n: renderer.render_batch(  # noqa: E731
        (
            plan := plan_videos(rng, n, pool, len(SCENES), frames, size, size, 0.3, cfg.background_variants)
        ).background_index,
        plan.subjects,
        plan.poses,
    )
    run(batch)  # warm-up
    start, cpu_start = time.perf_counter(), time.process_time()
    done = 0
    while done < videos:
        frames_out = run(batch)["frames"]
        done += len(frames_out)
    return done / (time.perf_counter() - start), done / (time.process_time() - cpu_start)


def bench_encode(frames: int, size: int, count: int) -> float:
    """Lossless mp4 files written per second."""
    rng = np.random.default_rng(0)
    clip = (rng.random((frames, size, size, 3)) * 255).astype(np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        for i in range(count):
            write_lossless_mp4(clip, Path(folder) / f"{i}.mp4", 8)
        return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--videos", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument(
        "--build", choices=["tiny", "small", "large", "gpu"], default=None, help="also time a full build"
    )
    parser.add_argument("--out", default=None, help="folder for --build (default: a temporary folder)")
    args = parser.parse_args()
    print(f"cpu cores visible: {len(os.sched_getaffinity(0))}; numpy {np.__version__}")
    wall, cpu = bench_render(args.frames, args.size, args.videos, args.batch)
    print(
        f"render   {args.frames}x{args.size}x{args.size}: {wall:,.0f} videos/s wall, {cpu:,.0f} videos per CPU-second"
        f" (single process, batch {args.batch})"
    )
    print(
        f"encode   lossless mp4: {bench_encode(args.frames, args.size, 200):,.0f} videos/s (noise frames: worst case)"
    )
    if args.build:
        out = Path(args.out or tempfile.mkdtemp(prefix="world-bench-")) / args.build
        start = time.perf_counter()
        summary = build_world(WorldConfig(preset=args.build), out, overwrite=True)
        total = time.perf_counter() - start
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in summary.seconds.items())
        cfg = apply_preset(WorldConfig(preset=args.build))
        memory = sum(v for k, v in summary.counts.items() if k.startswith("memory_"))
        print(f"build    {args.build}: {total:.1f} s ({stages}); {memory:,} memory pairs, "
              f"{cfg.num_train_videos + cfg.num_heldout_videos:,} videos -> {out}")  # fmt: skip
        if not args.out:
            shutil.rmtree(out.parent)


if __name__ == "__main__":
    main()
