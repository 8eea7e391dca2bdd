"""The training loop's work on a batch's prompts and noise: vimi (images read, text tokenized and the seeds' noise
drawn in the DataLoader workers by `prepare_batch`, then the small encoder's batched `encode_layout`) against what
it did before (every prompt image read, every text segment tokenized and embedded one by one, and the
noise drawn, in the loop itself), on the same batch.

What matters on a GPU is the loop's host work: each op it dispatches there is a kernel launch of ~5-20 us of
Python and driver time, and drawing 256 clips' noise on the CPU takes tens of milliseconds, while the model itself
(3.8M parameters, 256 tokens) computes a batch of 256 in milliseconds. So it prints, per batch, the ops dispatched
in the loop (device-independent: the launches a GPU would get) and the loop's wall time on --device, and the
prepare step's time in a worker (which the workers overlap).

    .venv/bin/python benchmarks/batch_prep.py
    .venv/bin/python benchmarks/batch_prep.py --batch 256 --device cuda
"""

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage
from torch.utils._python_dispatch import TorchDispatchMode

from vimi.config import load_config
from vimi.models.encoders.base import pad_rows
from vimi.models.encoders.small import IMAGE_SEGMENT, NULL_SEGMENT, TEXT_SEGMENT
from vimi.models.encoders.vision import prepare_images
from vimi.models.vimi_model import VimiModel, prompt_thumbnails
from vimi.prompt import Image, MultimodalPrompt, Text
from vimi.train.batch_prep import PreparedBatch, prepare_batch, training_noise

WORDS = [
    "a",
    "the",
    "blicket",
    "dax",
    "wug",
    "runs",
    "bounces",
    "spins",
    "grows",
    "in",
    "on",
    "desert",
    "city",
    "forest",
    "beach",
    "snow",
    "slowly",
    "fast",
]


class OpCounter(TorchDispatchMode):
    """Counts the aten ops dispatched inside it (each one a kernel launch on a GPU)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def make_prompts(folder: Path, batch: int, seed: int) -> list[MultimodalPrompt]:
    """Subject-task-like prompts: 1-2 images (32x32 PNG files) between 4-10 words of text each."""
    rng = np.random.default_rng(seed)
    prompts = []
    for row in range(batch):
        segments = [Text(" ".join(rng.choice(WORDS, rng.integers(4, 10))))]
        for column in range(int(rng.integers(1, 3))):
            path = folder / f"{row}-{column}.png"
            PILImage.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
            segments += [Image(str(path)), Text(" " + " ".join(rng.choice(WORDS, rng.integers(2, 6))))]
        prompts.append(MultimodalPrompt(segments))
    return prompts


def loop_before(model: VimiModel, prompts: list[MultimodalPrompt], seeds: list[int], shape) -> tuple:
    """The peer: the small encoder's per-segment loop, the thumbnails and the noise, as the training loop ran them
    before."""
    encoder, device = model.encoder, model.encoder.position.device
    images = [image.load() for prompt in prompts for image in prompt.images]
    image_tokens = encoder.vision(prepare_images(images, encoder.cfg.image_size).to(device))
    segment_type = encoder.segment_embed.weight
    rows, next_image = [], 0
    for prompt in prompts:
        pieces = [(encoder.null_token + segment_type[NULL_SEGMENT])[None]]
        for segment in prompt.segments:
            if isinstance(segment, Text):
                ids = torch.tensor(encoder.tokenize(segment.text), dtype=torch.long, device=device)
                pieces.append(encoder.text_embed(ids) + segment_type[TEXT_SEGMENT])
            else:
                pieces.append(image_tokens[next_image] + segment_type[IMAGE_SEGMENT])
                next_image += 1
        rows.append(torch.cat(pieces))
    x, mask = pad_rows(rows)
    x = x + encoder.position[: x.shape[1]]
    for block in encoder.blocks:
        x = block(x, mask)
    # The thumbnails were made in the loop too (the same function, then a method of the model), and the noise.
    thumbnails = prompt_thumbnails(prompts, model.cfg.backbone.image_thumbnail)
    sigma, noise = training_noise(model.diffusion, seeds, shape)
    return encoder.norm(x) * mask[..., None], thumbnails.to(device), sigma.to(device), noise.to(device)


def loop_vimi(model: VimiModel, prepared: PreparedBatch) -> tuple:
    """vimi: the condition from the worker's layout and thumbnails, and the worker's noise moved to the device."""
    cond = model.condition(prepared.prompts)
    device = cond.tokens.device
    return cond.tokens, cond.pooled, prepared.sigma.to(device), prepared.noise.to(device)


def timed(fn, repeats: int, device: str) -> float:
    """Median milliseconds of fn() on `device` (synchronised on CUDA)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/groundedworld-cpu-instruct.yaml")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config, overrides=["train.precision=fp32"])
    model = VimiModel(cfg.model, cfg.diffusion).to(args.device)
    with tempfile.TemporaryDirectory() as folder:
        prompts = make_prompts(Path(folder), args.batch, seed=0)
        seeds = list(range(args.batch))
        shape = model.autoencoder.latent_shape(cfg.data.num_frames, cfg.data.height, cfg.data.width)
        prepare = partial(prepare_batch, cfg.model, cfg.diffusion, shape, prompts, seeds)
        worker_ms = timed(prepare, args.repeats, "cpu")
        prepared = prepare()
        before = partial(loop_before, model, prompts, seeds, (args.batch, *shape))
        vimi = partial(loop_vimi, model, prepared)
        with torch.no_grad():
            if not all(torch.allclose(a, b, atol=1e-5) for a, b in zip(before(), vimi())):
                raise SystemExit("the two paths disagree: the benchmark compares different work")
            counts = []
            for fn in (before, vimi):
                with OpCounter() as counter:
                    fn()
                counts.append(counter.count)
            before_ms, vimi_ms = (timed(fn, args.repeats, args.device) for fn in (before, vimi))
    noise_ms = timed(lambda: training_noise(cfg.diffusion, seeds, (args.batch, *shape)), args.repeats, "cpu")
    images = sum(len(prompt.images) for prompt in prompts)
    segments = sum(len(prompt.segments) for prompt in prompts)
    print(
        f"batch {args.batch}: {images} images, {segments} segments, noise {shape}; model on {args.device}, 1 thread"
    )
    print(
        f"ops dispatched in the loop: before {counts[0]:6d}  vimi {counts[1]:6d}  ratio {counts[1] / counts[0]:.4f}"
    )
    print(
        f"loop wall ms a batch:       before {before_ms:6.1f}  vimi {vimi_ms:6.1f}  ratio {vimi_ms / before_ms:.3f}"
    )
    print(f"  of which drawing the noise (before only): {noise_ms:.1f} ms")
    print(
        f"prepare_batch in a worker: {worker_ms:.1f} ms a batch ({1000 * args.batch / worker_ms:.0f} samples/s)"
    )


if __name__ == "__main__":
    main()
