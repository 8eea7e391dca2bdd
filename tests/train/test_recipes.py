"""Every shipped recipe loads, the stages differ only by config, and the CPU recipes stay CPU-sized."""

import dataclasses
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
    assert dataclasses.replace(textonly.model, text_only=False) == pretrain.model
    assert textonly.train.steps == pretrain.train.steps
    assert textonly.model.text_only and not pretrain.model.text_only
    gpu = load_config(CONFIGS / "groundedworld-gpu-pretrain.yaml")
    assert gpu.train.precision == "bf16" and (gpu.data.num_frames, gpu.data.height) == (16, 64)


def test_recipes_sample_like_the_shipped_checkpoint():
    """The CPU recipes sample as the shipped GroundedWorld-S does, so a model trained with them is scored alike."""
    from vimi.pipeline import VimiPipeline

    cpu = load_config(CONFIGS / "groundedworld-cpu-instruct.yaml")
    shipped = VimiPipeline.from_pretrained(CONFIGS.parent / "checkpoints" / "groundedworld-s").cfg
    assert cpu.model == shipped.model
    assert (cpu.sample.sampler, cpu.sample.num_inference_steps) == ("euler_ancestral", 18)
    assert cpu.sample.guidance_text == shipped.sample.guidance_text == 1.0
    assert cpu.sample.guidance_image == shipped.sample.guidance_image == 1.0


def test_gpu_recipes_are_for_torchrun():
    """A GPU recipe is a config plus the usual torchrun command, named in its header."""
    for name in (
        "groundedworld-gpu-pretrain.yaml",
        "groundedworld-gpu-instruct.yaml",
        "webvid-pretrain.yaml",
    ):
        text = (CONFIGS / name).read_text()
        assert (
            "torchrun --nproc_per_node=" in text and f"-m vimi.cli train --config configs/{name}" in text
        ), name
