"""train(cfg) on the debug recipe: learning, stage 2 from stage 1, outputs, and clear errors before any work."""

import json
import math
import re

import pytest
import torch
from safetensors.torch import load_file

from vimi.checkpoint import latest_checkpoint
from vimi.config import load_config, to_dict
from vimi.errors import CheckpointError, ConfigError, DataError
from vimi.train.logging import read_metrics
from vimi.train.trainer import train

from .conftest import DEBUG_CONFIG, debug_config


@pytest.fixture(scope="module")
def stage1_run(tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1")
    cfg = debug_config(
        tiny_world,
        out,
        "train.steps=6",
        "train.ckpt_every=3",
        "train.log_every=2",
        "train.sample_every=6",
        "train.num_sample_prompts=1",
    )
    return out, train(cfg)


@pytest.mark.slow
def test_overfitting_one_batch_drives_loss_down_10x(tiny_world, tmp_path):
    cfg = debug_config(
        tiny_world,
        tmp_path,
        "train.overfit_batches=1",
        "train.batch_size=1",
        "train.steps=110",
        "train.lr=0.005",
        "train.warmup_steps=0",
        "train.grad_clip=0",
        "train.log_every=1",
        "train.ckpt_every=1000",
        "model.backbone.hidden=64",
        "model.backbone.heads=4",
    )
    train(cfg)
    losses = [m["loss"] for m in read_metrics(tmp_path)]
    assert len(losses) == 110
    assert losses[0] / min(losses[-5:]) >= 10, losses[::10]


def test_stage1_writes_checkpoints_config_metrics_and_samples(stage1_run):
    out, last = stage1_run
    assert last.name == "step-00000006" and (last / "COMPLETE").is_file()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000003", "step-00000006"]
    assert load_config(out / "config.yaml").train.steps == 6  # the resolved config, loadable again
    # The checkpoint keeps what generation needs: the run's config is config.yaml beside it.
    assert json.loads((last / "config.json").read_text()) == to_dict(
        load_config(out / "config.yaml").pipeline_config()
    )
    keys = load_file(last / "model.safetensors").keys()
    assert keys and all(k.startswith(("encoder.", "backbone.")) for k in keys)
    metrics = read_metrics(out)
    assert [m["step"] for m in metrics] == [2, 4, 6]
    assert all(m["loss"] > 0 and "steps_per_s" in m and "lr" in m for m in metrics)
    assert (out / "samples" / "step00000006-0-pretrain.mp4").stat().st_size > 0
    assert (out / "samples" / "step00000006-0-pretrain.gif").stat().st_size > 0
    prompts = json.loads((out / "samples" / "prompts.json").read_text())
    assert [p["task"] for p in prompts] == ["pretrain"] and prompts[0]["prompt"]
    assert not list((out / "samples").glob(".*.tmp"))  # atomic writes left no temp files
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


def test_stage2_initialises_from_stage1_and_mixes_tasks(stage1_run, tiny_world, tmp_path):
    stage1_out, stage1_last = stage1_run
    cfg = debug_config(
        tiny_world,
        tmp_path,
        "train.stage=instruct",
        f"train.init_from={stage1_out}",
        "train.steps=1",
        "train.lr=0.0",
    )
    last = train(cfg)
    before = load_file(stage1_last / "model.safetensors")
    after = load_file(last / "train_state" / "model.safetensors")
    # lr=0: the raw weights after one step are exactly the stage-1 EMA weights it started from.
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_stage2_names_its_data_and_refuses_a_stage1_checkpoint_of_another_model(
    stage1_run, tiny_world, tmp_path, caplog
):
    stage1_out, _ = stage1_run
    args = ["train.stage=instruct", f"train.init_from={stage1_out}", "train.steps=1", "train.lr=0.0"]
    with caplog.at_level("INFO", logger="vimi"):
        train(debug_config(tiny_world, tmp_path / "same", *args))
    # Each task's data source is named with its row count (video tasks read the world's video manifest).
    videos = tiny_world / "videos" / "train"
    assert re.search(rf"task predict: \d+ rows of {re.escape(str(videos))}", caplog.text)
    cfg = debug_config(tiny_world, tmp_path / "wider", *args, "model.backbone.hidden=48")
    with pytest.raises(CheckpointError, match="do not match this config's model"):
        train(cfg)


def test_instruct_without_stage1_checkpoint_is_a_config_error(tiny_world, tmp_path):
    cfg = debug_config(tiny_world, tmp_path / "run", "train.stage=instruct")
    with pytest.raises(ConfigError, match="init_from"):
        train(cfg)
    cfg = debug_config(
        tiny_world, tmp_path / "run", "train.stage=instruct", f"train.init_from={tmp_path}/none"
    )
    with pytest.raises(ConfigError, match=r"train\.init_from"):
        train(cfg)
    assert not (tmp_path / "run").exists()  # failed before any work


def test_instruct_from_scratch_trains_the_instruction_tasks_from_random_weights(tiny_world, tmp_path, caplog):
    args = ["train.stage=instruct", "train.init_from=scratch", "train.steps=2", "train.sample_every=0"]
    args += [
        "train.tasks.subject=0",
        "train.tasks.retrieval_t2v=0",
        "train.tasks.predict=1",
        "train.tasks.t2v=1",
    ]
    with caplog.at_level("INFO", logger="vimi"):
        last = train(debug_config(tiny_world, tmp_path / "run", *args))
    assert "initialised from" not in caplog.text and re.search(
        r"tasks \{'predict': 1.0, 't2v': 1.0\}", caplog.text
    )
    assert (
        all(math.isfinite(m["loss"]) for m in read_metrics(tmp_path / "run")) and last.name == "step-00000002"
    )


def test_missing_dataset_is_a_data_error_naming_it(tiny_world, tmp_path):
    cfg = debug_config(tiny_world, tmp_path / "run", f"data.train_manifest={tmp_path}/missing_prompts")
    with pytest.raises(DataError, match="missing_prompts"):
        train(cfg)
    cfg = debug_config(tiny_world, tmp_path / "run", "data.train_manifest=")
    with pytest.raises(DataError, match="build-prompts"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_unknown_key_is_a_config_error_naming_it(tiny_world, tmp_path):
    with pytest.raises(ConfigError, match=r"train\.learning_rate"):
        load_config(DEBUG_CONFIG, ["train.learning_rate=0.1"])
    with pytest.raises(ConfigError, match="batch_size"):
        train(debug_config(tiny_world, tmp_path, "train.batch_size=3", "train.grad_accum=2"))


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.log_every=0", "log_every"),
        ("train.ckpt_every=0", "ckpt_every"),
        ("train.sample_every=-1", "sample_every"),
    ],
)
def test_zero_or_negative_step_intervals_are_config_errors(tiny_world, tmp_path, override, key):
    # log_every=0 / ckpt_every=0 used to pass and crash with ZeroDivisionError after the first step.
    with pytest.raises(ConfigError, match=rf"train\.{key} must be >= [01].*got -?[01]"):
        train(debug_config(tiny_world, tmp_path / "run", override))
    assert not (tmp_path / "run").exists()  # failed before any work


def test_cli_exit_code_and_message_for_bad_config(tmp_path, capsys):
    from vimi.cli import main

    assert (
        main(
            [
                "train",
                "--config",
                str(DEBUG_CONFIG),
                "--set",
                "train.stage=instruct",
                "--set",
                f"train.out_dir={tmp_path}",
            ]
        )
        == 2
    )
    assert "init_from" in capsys.readouterr().err


def test_latest_checkpoint_of_a_run(stage1_run):
    out, last = stage1_run
    assert latest_checkpoint(out / "checkpoints") == last
