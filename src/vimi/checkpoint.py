"""The checkpoint folder: what `VimiPipeline.from_pretrained` reads and training writes.

    config.json          the pipeline's config: the model, diffusion and sample sections (PipelineConfig)
    model.safetensors    the inference weights: encoder.* and backbone.*, without frozen pretrained parts
                         that load from their own local paths (the autoencoder, an encoder's frozen LM)
    COMPLETE             written last; a folder without it is an interrupted write and is never loaded

A training checkpoint (`step-XXXXXXXX/`, vimi.train.checkpoint) is such a folder with its EMA weights,
plus `train_state/` with what only resuming needs. Loading reads only JSON and safetensors: a checkpoint
folder can never run code.
"""

import json
import logging
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from vimi.config import PipelineConfig, from_dict, to_dict
from vimi.errors import CheckpointError
from vimi.utils.files import read_json
from vimi.utils.typed_config import missing_keys

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
COMPLETE = "COMPLETE"
TRAIN_STATE = "train_state"
"""The subfolder of a training checkpoint with what only resuming needs (raw weights, optimizer, RNG, step)."""
STEP_DIR = re.compile(r"^step-(\d{8})$")
# State-dict prefixes of the weights a checkpoint holds (less the external ones the model names).
INFERENCE_PREFIXES = ("encoder.", "backbone.")


# --------------------------------------------------------------------------------------------------
# Finding a checkpoint
# --------------------------------------------------------------------------------------------------


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under `root`, oldest first; folders without COMPLETE are ignored."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and STEP_DIR.match(p.name) and (p / COMPLETE).is_file()]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint under `root`, or None."""
    found = list_checkpoints(root)
    return found[-1] if found else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A complete checkpoint folder from `path`: the folder itself, or the newest one inside a run folder."""
    path = Path(path)
    if (path / COMPLETE).is_file():
        return path
    for root in (path, path / "checkpoints"):
        found = latest_checkpoint(root)
        if found is not None:
            return found
    if path.is_dir() and (path / WEIGHTS_NAME).exists():
        raise CheckpointError(f"{path}: no {COMPLETE} marker; the checkpoint is an interrupted write")
    raise CheckpointError(
        f"checkpoint not found: {path} (expected a step-* folder with {COMPLETE}, or a run folder)"
    )


# --------------------------------------------------------------------------------------------------
# The config
# --------------------------------------------------------------------------------------------------


def pipeline_config_json(cfg: PipelineConfig) -> str:
    """config.json's text."""
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True) + "\n"


def load_pipeline_config(path: str | Path) -> tuple[Path, PipelineConfig]:
    """The complete checkpoint folder for `path` (a checkpoint folder or a run folder) and its config.

    Sections that generation does not read (a run's data, train, ... sections, which older checkpoints
    kept) are ignored; a section or key that it does read must be there, or CheckpointError names it.
    """
    folder = resolve_checkpoint(path)
    config_path = folder / CONFIG_NAME
    raw = read_json(config_path, "vimi checkpoint config", error=CheckpointError)
    sections = set(to_dict(PipelineConfig()))
    if ignored := sorted(set(raw) - sections):
        log.info("%s: ignoring section(s) %s, which generation does not use", config_path, ", ".join(ignored))
    raw = {key: value for key, value in raw.items() if key in sections}
    if missing := missing_keys(PipelineConfig, raw):
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise CheckpointError(f"{config_path}: missing config key(s) {shown}; the checkpoint is incomplete")
    return folder, from_dict(PipelineConfig, raw, source=str(config_path))


# --------------------------------------------------------------------------------------------------
# The weights
# --------------------------------------------------------------------------------------------------


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A safetensors file as a dict, with a CheckpointError naming the file when it is unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights not found: {path}")
    try:
        return load_file(path)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: unreadable weights ({err})") from None


def is_inference_key(model: nn.Module, key: str) -> bool:
    """True for the state-dict keys model.safetensors holds (encoder.*, backbone.*, less external parts)."""
    return key.startswith(INFERENCE_PREFIXES) and not key.startswith(model.external_state_prefixes())


def inference_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights of model.safetensors."""
    return {k: v for k, v in model.state_dict().items() if is_inference_key(model, k)}


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state a training checkpoint holds: everything but the externally loaded frozen parts."""
    external = model.external_state_prefixes()
    return {k: v for k, v in model.state_dict().items() if not k.startswith(external)}


def load_inference_weights(
    model: nn.Module, weights: dict[str, torch.Tensor], source: str, hint: str = ""
) -> None:
    """Load model.safetensors' weights into `model`, or CheckpointError naming `source` and what differs."""
    expected = set(inference_state_dict(model))
    missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
    if missing or unexpected:
        problem = f"{len(missing)} missing key(s) {missing[:3]}, {len(unexpected)} unexpected key(s) {unexpected[:3]}"
    else:
        try:
            model.load_state_dict(weights, strict=False)
            return
        except RuntimeError as err:  # same names, other shapes (e.g. another width)
            problem = str(err).strip().splitlines()[-1].strip()
    raise CheckpointError(f"{source}: weights do not match this config's model ({problem}){hint}")
