"""Fixtures for the training tests: a tiny dataset on disk and the debug recipe pointed at it."""

from pathlib import Path

import pytest

from vimi.config import VimiConfig, load_config

REPO = Path(__file__).resolve().parents[2]
DEBUG_CONFIG = REPO / "configs" / "debug.yaml"


def build_tiny_world(root: Path) -> Path:
    """A tiny GroundedWorld (world package API) plus the build-prompts dataset over it: WORLD/prompts."""
    from vimi.config import RetrievalConfig, WorldConfig
    from vimi.data.world import build_world
    from vimi.retrieval import build_index, build_prompts

    world = root / "world"
    build_world(WorldConfig(preset="tiny", seed=3), world)
    build_index(world / "memory", root / "index", RetrievalConfig())
    build_prompts(
        world / "videos" / "train", root / "index", world / "prompts", RetrievalConfig(k=2), progress=False
    )
    return world


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GroundedWorld folder with a `prompts/` multimodal-prompt dataset inside (about 2 s, once)."""
    return build_tiny_world(tmp_path_factory.mktemp("tiny_world"))


def debug_config(world: Path, out_dir: Path, *overrides: str) -> VimiConfig:
    """configs/debug.yaml on the tiny dataset, writing to out_dir."""
    return load_config(
        DEBUG_CONFIG,
        [
            f"data.world_dir={world}",
            f"data.train_manifest={world / 'prompts'}",
            f"train.out_dir={out_dir}",
            "train.progress=false",
            *overrides,
        ],
    )
