"""A real 2-process gloo job under torchrun matches a 1-process run with the same global batch."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vimi.train.checkpoint import load_train_state
from vimi.train.logging import read_metrics
from vimi.train.trainer import train

from .conftest import DEBUG_CONFIG, debug_config

STEPS = 4
RECIPE = (f"train.steps={STEPS}", "train.batch_size=4", "train.log_every=1", f"train.ckpt_every={STEPS}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_rank_ddp_matches_one_process(tiny_world, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun not found beside the python executable"
    out2 = tmp_path / "two_ranks"
    command = [
        torchrun,
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        "-m",
        "vimi.cli",
        "train",
        "--config",
        str(DEBUG_CONFIG),
    ]
    for item in (
        *RECIPE,
        f"data.world_dir={tiny_world}",
        f"data.train_manifest={tiny_world / 'prompts'}",
        f"train.out_dir={out2}",
        "train.progress=false",
    ):
        command += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]

    out1 = tmp_path / "one_rank"
    train(debug_config(tiny_world, out1, *RECIPE))

    two, one = load_train_state(out2 / "checkpoints"), load_train_state(out1 / "checkpoints")
    assert two["state"]["world_size"] == 2
    digests = two["state"]["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]  # both ranks hold bitwise-identical weights
    losses2 = [m["loss"] for m in read_metrics(out2)]
    losses1 = [m["loss"] for m in read_metrics(out1)]
    assert len(losses2) == len(losses1) == STEPS
    assert losses2 == pytest.approx(losses1, rel=1e-5, abs=1e-6)
    for key, value in one["model"].items():
        assert torch.allclose(two["model"][key], value, rtol=1e-4, atol=1e-6), key
