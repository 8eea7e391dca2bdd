"""--resume continues bit-exactly: N straight steps == k steps, a failure, SIGKILL or time limit, then resume to N."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from vimi.checkpoint import latest_checkpoint
from vimi.errors import ConfigError
from vimi.train.checkpoint import load_train_state
from vimi.train.logging import read_metrics
from vimi.train.trainer import train

from .conftest import DEBUG_CONFIG, debug_config

STEPS = 8
# A cosine schedule and gradient accumulation, so a resume must restore the scheduler and data position.
RECIPE = (f"train.steps={STEPS}", "train.schedule=cosine", "train.grad_accum=2", "train.log_every=1")


class InjectedFailure(RuntimeError):
    pass


def final_state(out_dir):
    return load_train_state(out_dir / "checkpoints")


def assert_bitwise_equal(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def straight_run(tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    train(debug_config(tiny_world, out, *RECIPE, f"train.ckpt_every={STEPS}"))
    return out


def test_resume_after_injected_failure_is_bitwise_equal(tiny_world, straight_run, tmp_path):
    cfg = debug_config(tiny_world, tmp_path, *RECIPE, "train.ckpt_every=3")

    def fail_after_checkpoint(step):
        if step == 4:  # one step past checkpoint 3: that step's work is lost and must be redone
            raise InjectedFailure

    with pytest.raises(InjectedFailure):
        train(cfg, on_step=fail_after_checkpoint)
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step-00000003"
    cfg.train.resume = True
    train(cfg)
    resumed, straight = final_state(tmp_path), final_state(straight_run)
    assert resumed["state"]["step"] == straight["state"]["step"] == STEPS
    assert_bitwise_equal(resumed["model"], straight["model"])
    assert_bitwise_equal(resumed["ema"], straight["ema"])
    assert resumed["scheduler"] == straight["scheduler"]
    # The metrics log holds each step once, with the straight run's losses.
    assert [m["loss"] for m in read_metrics(tmp_path)] == [m["loss"] for m in read_metrics(straight_run)]


def test_time_limit_stops_with_a_checkpoint_and_resume_is_bitwise_equal(tiny_world, straight_run, tmp_path):
    cfg = debug_config(tiny_world, tmp_path, *RECIPE, f"train.ckpt_every={STEPS}", "train.max_time_s=1e-9")
    last = train(cfg)  # the limit has passed after the first step: it stops there, saving
    assert last.name == "step-00000001" and latest_checkpoint(tmp_path / "checkpoints") == last
    assert [m["step"] for m in read_metrics(tmp_path)] == [1]
    cfg.train.resume = True
    train(cfg)  # one step per call from here
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step-00000002"
    cfg.train.max_time_s = 0.0
    train(cfg)
    resumed, straight = final_state(tmp_path), final_state(straight_run)
    assert resumed["state"]["step"] == STEPS
    assert_bitwise_equal(resumed["model"], straight["model"])
    assert_bitwise_equal(resumed["ema"], straight["ema"])
    with pytest.raises(ConfigError, match=r"train\.max_time_s"):
        train(debug_config(tiny_world, tmp_path / "bad", "train.max_time_s=-1"))


@pytest.mark.slow
def test_sigkill_at_any_moment_leaves_a_loadable_checkpoint_and_resume_matches(
    tiny_world, straight_run, tmp_path
):
    overrides = [
        *RECIPE,
        "train.ckpt_every=1",
        "train.keep_last=2",
        f"data.world_dir={tiny_world}",
        f"data.train_manifest={tiny_world / 'prompts'}",
        f"train.out_dir={tmp_path}",
        "train.progress=false",
    ]
    command = [sys.executable, "-m", "vimi.cli", "train", "--config", str(DEBUG_CONFIG)]
    for item in overrides:
        command += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while latest_checkpoint(tmp_path / "checkpoints") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # somewhere in the middle of later steps and checkpoint writes
    process.send_signal(signal.SIGKILL)
    process.wait()
    latest = latest_checkpoint(tmp_path / "checkpoints")
    assert latest is not None
    state = load_train_state(latest)  # complete and loadable, whatever moment the kill hit
    assert 1 <= state["state"]["step"] <= STEPS
    result = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    resumed, straight = final_state(tmp_path), final_state(straight_run)
    assert_bitwise_equal(resumed["model"], straight["model"])
    assert_bitwise_equal(resumed["ema"], straight["ema"])


def test_constant_rate_run_cooled_down_by_resume_equals_a_straight_wsd_run(tiny_world, tmp_path):
    # wsd over the last 5 of 8 steps: steps 0-3 run at the full rate, as a constant schedule does, so a
    # constant run saved at step 4 and resumed with the wsd schedule must use the decayed rate from step 4 on.
    base = (*RECIPE[2:], "train.warmup_steps=0", "train.ckpt_every=4")
    wsd = ("train.steps=8", "train.schedule=wsd", "train.decay_steps=5", "train.min_lr_ratio=0.0")
    train(debug_config(tiny_world, tmp_path / "straight", *base, *wsd))
    cooled = tmp_path / "cooled"
    train(debug_config(tiny_world, cooled, *base, "train.steps=4", "train.schedule=constant"))
    train(debug_config(tiny_world, cooled, *base, *wsd, "train.resume=true"))
    resumed, straight = final_state(cooled), final_state(tmp_path / "straight")
    assert resumed["state"]["step"] == 8
    assert_bitwise_equal(resumed["model"], straight["model"])
    lrs = [m["lr"] for m in read_metrics(cooled)]
    assert lrs[3] > lrs[4] > lrs[7] == 0.0
    with pytest.raises(ConfigError, match=r"train\.decay_steps=0"):
        train(debug_config(tiny_world, tmp_path / "bad", *base, "train.schedule=wsd"))


def test_resume_takes_the_rate_from_the_config(tiny_world, tmp_path):
    # A cooled-down run re-warmed at a lower peak: the rate saved in the scheduler must not win.
    base = (*RECIPE[2:], "train.warmup_steps=0", "train.ckpt_every=3", "train.schedule=constant")
    run = tmp_path / "rewarmed"
    train(debug_config(tiny_world, run, *base, "train.steps=3", "train.lr=1e-3"))
    train(debug_config(tiny_world, run, *base, "train.steps=5", "train.lr=2.5e-4", "train.resume=true"))
    lrs = [m["lr"] for m in read_metrics(run)]
    assert lrs == pytest.approx([1e-3] * 3 + [2.5e-4] * 2)
