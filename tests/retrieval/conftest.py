"""Fixtures of the retrieval tests: a small memory and a video dataset (helpers in corpora.py)."""

from pathlib import Path

import pytest

from vimi.config import RetrievalConfig

from .corpora import write_memory, write_videos


@pytest.fixture
def memory(tmp_path) -> Path:
    write_memory(tmp_path / "memory")
    return tmp_path / "memory"


@pytest.fixture
def videos(tmp_path, memory) -> Path:
    write_videos(tmp_path / "videos", memory, leak_id="blicket-0")
    return tmp_path / "videos"


@pytest.fixture
def cfg() -> RetrievalConfig:
    return RetrievalConfig(k=2, shard_size=3, threads=1)
