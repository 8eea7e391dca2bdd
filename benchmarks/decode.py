"""Clip decoding speed: vimi's `decode_frames` against PyAV's per-frame `frame.to_image()` (what it did before),
on the same clips in the same process, in wall and process-CPU time per clip. `to_image()` sets up a new
colour conversion for every frame, which costs more wall time than CPU time (worse on busy cores).

Two kinds of clip: GroundedWorld's lossless 8x32x32 clips (gbrp, what training reads ~16 of per step) and
a lossy yuv420p clip (libx264, like real footage), each written to a temporary folder first.

    .venv/bin/python benchmarks/decode.py
    .venv/bin/python benchmarks/decode.py --size 128 --repeats 200
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from vimi.data.video_io import decode_frames, write_mp4


def decode_with_to_image(path: Path, indices: list[int]) -> np.ndarray:
    """The peer: the same loop with PyAV's own conversion of each kept frame to an RGB PIL image."""
    wanted, frames = set(indices), {}
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                frames[index] = np.asarray(frame.to_image())
            if index >= max(indices):
                break
    return np.stack([frames[i] for i in indices])


def median_ms(decode, path: Path, indices: list[int], repeats: int) -> tuple[float, float]:
    """Median (wall, process-CPU) milliseconds of one decode."""
    wall, cpu = [], []
    for _ in range(repeats):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        decode(path, indices)
        cpu.append(time.process_time() - cpu_start)
        wall.append(time.perf_counter() - wall_start)
    return 1000 * statistics.median(wall), 1000 * statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    clip = (
        torch.rand(3, args.frames, args.size, args.size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    )
    indices = list(range(args.frames))
    with tempfile.TemporaryDirectory() as folder:
        for kind, lossless in (("lossless (gbrp)", True), ("lossy (yuv420p)", False)):
            path = write_mp4(clip, Path(folder) / f"{lossless}.mp4", lossless=lossless)
            np.testing.assert_array_equal(decode_frames(path, indices), decode_with_to_image(path, indices))
            for decode in (decode_frames, decode_with_to_image):  # warm-up
                decode(path, indices)
            ours = median_ms(decode_frames, path, indices, args.repeats)
            theirs = median_ms(decode_with_to_image, path, indices, args.repeats)
            for clock, mine, peer in zip(("wall", "CPU"), ours, theirs, strict=True):
                print(
                    f"{kind} {args.frames}x{args.size}x{args.size}, {clock}: decode_frames {mine:.2f} ms/clip, "
                    f"to_image {peer:.2f} ms/clip, ratio {mine / peer:.2f} (same pixels)"
                )


if __name__ == "__main__":
    main()
