"""Every shipped recipe loads, the stages differ only by config, and the CPU recipes stay CPU-sized."""

import math
from pathlib import Path

import pytest

from vimi.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RECIPES = sorted(p.name for p in CONFIGS.glob("*.yaml"))


def video_tokens(cfg) -> int:
    b = cfg.model.backbone
    return math.prod(
        (cfg.data.num_frames // b.patch_t, cfg.data.height // b.patch_h, cfg.data.width // b.patch_w)
    )


def test_all_expected_recipes_exist():
    expected = {
        "base.yaml",
        "debug.yaml",
        "groundedworld-cpu-pretrain.yaml",
        "groundedworld-cpu-instruct.yaml",
        "groundedworld-cpu-textonly.yaml",
        "groundedworld-gpu-pretrain.yaml",
        "groundedworld-gpu-instruct.yaml",
        "webvid-pretrain.yaml",
        "webvid-instruct.yaml",
    }
    assert expected <= set(RECIPES)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_loads(name):
    cfg = load_config(CONFIGS / name)
    if cfg.train.stage == "instruct":
        assert cfg.train.init_from, "a stage-2 recipe names its stage-1 checkpoint"


@pytest.mark.parametrize(
    "name", ["debug.yaml", "groundedworld-cpu-pretrain.yaml", "groundedworld-cpu-instruct.yaml"]
)
def test_cpu_recipes_keep_video_tokens_small(name):
    cfg = load_config(CONFIGS / name)
    assert video_tokens(cfg) <= 256 and cfg.train.precision == "fp32"


def test_stages_and_baseline_differ_only_where_they_should():
    pretrain = load_config(CONFIGS / "groundedworld-cpu-pretrain.yaml")
    instruct = load_config(CONFIGS / "groundedworld-cpu-instruct.yaml")
    textonly = load_config(CONFIGS / "groundedworld-cpu-textonly.yaml")
    assert instruct.model == pretrain.model and instruct.data == pretrain.data
    assert textonly.model == pretrain.model and textonly.train.steps == pretrain.train.steps
    assert textonly.train.text_only and not pretrain.train.text_only
    gpu = load_config(CONFIGS / "groundedworld-gpu-pretrain.yaml")
    assert gpu.train.precision == "bf16" and (gpu.data.num_frames, gpu.data.height) == (16, 64)


def test_shippable_gpu_recipe_continues_the_shipped_model():
    """groundedworld-s-gpu-instruct (tools/gpu_slot.sh) trains the shipped model on the CPU recipe's data and noise:
    only batch, precision, optimizer and learning rate change, so its checkpoints ship in place of the CPU ones."""
    from vimi.pipeline import VimiPipeline

    gpu = load_config(CONFIGS / "groundedworld-s-gpu-instruct.yaml")
    cpu = load_config(CONFIGS / "groundedworld-cpu-instruct.yaml")
    shipped = VimiPipeline.from_pretrained(CONFIGS.parent / gpu.train.init_from).cfg
    assert gpu.model == cpu.model == shipped.model
    assert gpu.diffusion == cpu.diffusion and gpu.sample == cpu.sample
    for key in ("tasks", "subject_name_prob", "subject_reference_prob"):
        assert getattr(gpu.train, key) == getattr(cpu.train, key), key
    assert (gpu.data.num_frames, gpu.data.height, gpu.data.width) == (8, 32, 32)
    assert gpu.train.precision == "bf16" and gpu.train.batch_size == 16 * cpu.train.batch_size
    # tools/gpu_slot.sh scores model and baseline at a checkpoint step both runs hold
    assert gpu.train.keep_last * gpu.train.ckpt_every >= 2000
