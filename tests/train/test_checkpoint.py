"""Atomic checkpoints: COMPLETE marker, newest-complete selection, pruning, weights_only loading."""

import json
import os

import pytest
import torch

from vimi.checkpoint import latest_checkpoint, list_checkpoints, resolve_checkpoint
from vimi.errors import CheckpointError
from vimi.train import checkpoint as ckpt


def save(root, step, value=1.0, keep_last=3):
    weights = {"backbone.w": torch.full((2, 3), value), "encoder.b": torch.arange(3.0)}
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))])
    return ckpt.save_checkpoint(
        root,
        step,
        config={"sample": {"num_inference_steps": 9}},
        inference_weights=weights,
        raw_weights=weights,
        optimizer_state=optimizer.state_dict(),
        scheduler_state={"last_epoch": step},
        train_state={"samples_seen": step * 4},
        keep_last=keep_last,
    )


def test_round_trip_loads_with_weights_only(tmp_path):
    path = save(tmp_path, 5, value=2.5)
    assert path.name == "step-00000005" and (path / "COMPLETE").is_file()
    assert json.loads((path / "config.json").read_text())["sample"]["num_inference_steps"] == 9
    state = ckpt.load_train_state(tmp_path)
    assert torch.equal(state["model"]["backbone.w"], torch.full((2, 3), 2.5))
    assert state["state"] == {"step": 5, "samples_seen": 20}
    assert state["scheduler"] == {"last_epoch": 5}
    assert "torch" in state["rng"] and state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3)


def test_checkpoint_files_get_the_permissions_of_plain_writes(tmp_path):
    """safetensors writes 0600 files; a checkpoint on a shared file system must be readable by the team."""
    umask = os.umask(0o022)
    try:
        path = save(tmp_path, 1)
    finally:
        os.umask(umask)
    files = [p for p in path.rglob("*") if p.is_file()]
    assert {"model.safetensors", "optimizer.pt", "COMPLETE"} <= {p.name for p in files}
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {oct(0o644)}


def test_folder_without_complete_marker_is_never_picked(tmp_path):
    save(tmp_path, 1)
    newer = save(tmp_path, 2)
    (newer / "COMPLETE").unlink()  # as if killed before the marker landed
    assert latest_checkpoint(tmp_path).name == "step-00000001"
    with pytest.raises(CheckpointError, match="COMPLETE"):
        resolve_checkpoint(newer)


def test_keep_last_prunes_old_and_stale_temp_folders(tmp_path):
    (tmp_path / ".step-00000009.tmp-dead").mkdir()  # a killed writer's leftovers
    for step in range(1, 6):
        save(tmp_path, step, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000004", "step-00000005"]
    assert not list(tmp_path.glob(".step-*"))


def test_resave_same_step_replaces_it(tmp_path):
    save(tmp_path, 3, value=1.0)
    save(tmp_path, 3, value=7.0)
    state = ckpt.load_train_state(tmp_path / "step-00000003")
    assert torch.equal(state["ema"]["backbone.w"], torch.full((2, 3), 7.0))


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        resolve_checkpoint(tmp_path / "nope")


def test_corrupt_weights_name_the_file(tmp_path):
    path = save(tmp_path, 1)
    (path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        ckpt.load_train_state(path)


def test_weights_digest_sees_one_bit():
    a = {"w": torch.zeros(4)}
    b = {"w": torch.zeros(4)}
    assert ckpt.weights_digest(a) == ckpt.weights_digest(b)
    b["w"][2] = torch.finfo(torch.float32).tiny
    assert ckpt.weights_digest(a) != ckpt.weights_digest(b)
