"""I3D (FVD features) throughput: clips per second on CPU, and on each GPU when one is present.

Usage: .venv/bin/python benchmarks/eval.py [--batch-size 4] [--frames 16] [--repeats 3] [--threads 0]
"""

import argparse
import time

import torch

from vimi.eval.i3d import I3D_INPUT_SIZE, load_i3d


def clips_per_second(device: torch.device, batch_size: int, frames: int, repeats: int, half: bool) -> float:
    """One warm-up batch, then the mean rate over `repeats` timed batches."""
    model = load_i3d(device=device)
    dtype = torch.bfloat16 if half else torch.float32
    model = model.to(dtype)
    clips = (
        torch.rand(batch_size, 3, frames, I3D_INPUT_SIZE, I3D_INPUT_SIZE, device=device, dtype=dtype) * 2 - 1
    )
    with torch.inference_mode():
        model(clips)  # warm-up: cuDNN algorithm search, allocator
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            model(clips)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return batch_size * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--gpu-batch-size", type=int, default=32)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--skip-cpu", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = f"{args.frames}x{I3D_INPUT_SIZE}x{I3D_INPUT_SIZE}"
    if not args.skip_cpu:
        rate = clips_per_second(torch.device("cpu"), args.batch_size, args.frames, args.repeats, half=False)
        print(
            f"I3D cpu ({torch.get_num_threads()} threads) fp32 batch {args.batch_size}, {shape}: {rate:.2f} clips/s"
        )
    for index in range(torch.cuda.device_count()):
        device = torch.device(f"cuda:{index}")
        name = torch.cuda.get_device_name(device)
        for half in (False, True):
            rate = clips_per_second(device, args.gpu_batch_size, args.frames, args.repeats * 3, half)
            precision = "bf16" if half else "fp32"
            print(
                f"I3D {device} ({name}) {precision} batch {args.gpu_batch_size}, {shape}: {rate:.1f} clips/s"
            )


if __name__ == "__main__":
    main()
