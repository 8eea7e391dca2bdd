"""Retrieval quality on GroundedWorld: the memory images of the subjects a caption names are retrieved."""

import pytest

from vimi.config import RetrievalConfig, WorldConfig
from vimi.data.manifest import iter_records
from vimi.retrieval import build_index, build_prompts

world = pytest.importorskip("vimi.data.world.build")


def subject_recall(world_dir, out) -> float:
    """Fraction of (caption, named subject) pairs with >= 1 image of that subject among the caption's hits."""
    memory = {r["id"]: r for r in iter_records(world_dir / "memory", ["id", "kind", "subject"])}
    found = total = 0
    for row in iter_records(out, ["hit_ids", "subjects"]):
        retrieved = {memory[h]["subject"] for h in row["hit_ids"] if memory[h]["kind"] == "subject"}
        found += sum(s in retrieved for s in row["subjects"])
        total += len(row["subjects"])
    return found / total


def test_bm25_recall_at_4_of_named_subjects_on_tiny_world(tmp_path):
    world.build_world(WorldConfig(preset="tiny"), tmp_path / "world")
    cfg = RetrievalConfig(k=4, threads=1)
    build_index(tmp_path / "world" / "memory", tmp_path / "index", cfg, progress=False)
    out = build_prompts(
        tmp_path / "world" / "videos" / "train", tmp_path / "index", tmp_path / "out", cfg, progress=False
    )
    assert subject_recall(tmp_path / "world", out) >= 0.95
