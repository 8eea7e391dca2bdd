"""Atomic training checkpoints: a folder that is either complete (COMPLETE marker) or never loaded.

Layout of one checkpoint (also a pipeline folder that VimiPipeline.from_pretrained reads, vimi.checkpoint):

    step-00000050/config.json               the pipeline config (model, diffusion, sample sections)
    step-00000050/model.safetensors         EMA inference weights (encoder.*, backbone.*)
    step-00000050/train_state/model.safetensors   raw weights
    step-00000050/train_state/optimizer.pt  optimizer state  (torch.save; loaded with weights_only=True)
    step-00000050/train_state/scheduler.pt  scheduler state  (idem)
    step-00000050/train_state/rng.pt        torch / python RNG states (idem)
    step-00000050/train_state/state.json    step, samples seen (the data position), world size
    step-00000050/COMPLETE                  written last

The folder is written as `.step-00000050.tmp-XXXX` and renamed once COMPLETE is in it, so a kill at
any moment leaves either nothing new or a complete checkpoint; leftover temp folders are removed.
"""

import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from vimi.checkpoint import (
    COMPLETE,
    CONFIG_NAME,
    TRAIN_STATE,
    WEIGHTS_NAME,
    checkpoint_name,
    list_checkpoints,
    load_weights,
    resolve_checkpoint,
)
from vimi.errors import CheckpointError
from vimi.utils.atomic import atomic_directory


def save_checkpoint(
    root: str | Path,
    step: int,
    *,
    config: dict,
    inference_weights: dict[str, torch.Tensor],
    raw_weights: dict[str, torch.Tensor],
    optimizer_state: dict,
    scheduler_state: dict,
    train_state: dict,
    keep_last: int = 3,
) -> Path:
    """Write checkpoint `step` under `root` atomically and keep only the newest `keep_last` complete ones."""
    root = Path(root)
    final = root / checkpoint_name(step)
    # A re-save of a step after a resume replaces the old folder; COMPLETE is written last.
    with atomic_directory(final, marker=COMPLETE, marker_text=f"{step}\n") as tmp:
        (tmp / TRAIN_STATE).mkdir()
        _write_json(tmp / CONFIG_NAME, config)
        save_file(_contiguous(inference_weights), tmp / WEIGHTS_NAME)
        save_file(_contiguous(raw_weights), tmp / TRAIN_STATE / WEIGHTS_NAME)
        torch.save(optimizer_state, tmp / TRAIN_STATE / "optimizer.pt")
        torch.save(scheduler_state, tmp / TRAIN_STATE / "scheduler.pt")
        torch.save(rng_state(), tmp / TRAIN_STATE / "rng.pt")
        _write_json(tmp / TRAIN_STATE / "state.json", {"step": step, **train_state})
    prune_checkpoints(root, keep_last)
    return final


def prune_checkpoints(root: str | Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` complete checkpoints, and stale temp folders."""
    root = Path(root)
    complete = list_checkpoints(root)
    for old in complete[: max(len(complete) - max(keep_last, 1), 0)]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".step-*"):  # only rank 0 writes, and only here: these are killed writes
        shutil.rmtree(stale, ignore_errors=True)


def load_train_state(ckpt: str | Path) -> dict[str, Any]:
    """Everything `save_checkpoint` wrote, loaded without unpickling code (weights_only=True)."""
    ckpt = resolve_checkpoint(ckpt)
    state_dir = ckpt / TRAIN_STATE
    if not state_dir.is_dir():
        raise CheckpointError(f"{ckpt}: not a training checkpoint (no train_state/); use it with init_from")

    def load_pt(name: str):
        try:
            return torch.load(state_dir / name, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as err:
            raise CheckpointError(f"{state_dir / name}: unreadable ({err})") from None

    return {
        "path": ckpt,
        "ema": load_weights(ckpt / WEIGHTS_NAME),
        "model": load_weights(state_dir / WEIGHTS_NAME),
        "optimizer": load_pt("optimizer.pt"),
        "scheduler": load_pt("scheduler.pt"),
        "rng": load_pt("rng.pt"),
        "state": json.loads((state_dir / "state.json").read_text(encoding="utf-8")),
    }


def weights_digest(weights: dict[str, torch.Tensor]) -> str:
    """A digest of tensors' names, dtypes, shapes and bytes: equal digests mean bitwise-equal weights."""
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(weights):
        tensor = weights[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def rng_state() -> dict:
    """The global RNG states (torch CPU, CUDA, python) as weights_only-loadable objects."""
    state: dict = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


def _contiguous(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # clone(): safetensors refuses tensors that share storage (tied weights, views of one buffer).
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in weights.items()}


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
