"""A tiny world built once per test session (about a second)."""

from pathlib import Path

import pytest

from vimi.config import WorldConfig
from vimi.data.world import GroundedWorld, build_world, load_world


@pytest.fixture(scope="session")
def tiny_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "tiny"
    build_world(WorldConfig(preset="tiny", seed=3), out)
    return out


@pytest.fixture(scope="session")
def tiny_world(tiny_world_dir: Path) -> GroundedWorld:
    return load_world(tiny_world_dir)
