"""`vimi eval grounding|fvd|ucf101`: a tiny real checkpoint end to end, and bad inputs exiting 2 with a reason."""

import json
from pathlib import Path

import pytest

from vimi.cli import main
from vimi.config import WorldConfig
from vimi.data.world import build_world


@pytest.fixture(scope="module")
def cli_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "world"
    build_world(WorldConfig(preset="tiny", seed=4, num_heldout_videos=16, num_train_videos=4), out)
    return out


def test_grounding_writes_json_and_report_for_checkpoint_and_baseline(
    tiny_checkpoint, cli_world, tmp_path, capsys
):
    out = tmp_path / "eval"
    args = ["eval", "grounding", "--checkpoint", str(tiny_checkpoint), "--world", str(cli_world), "--n", "1"]
    args += ["--task", "all", "--baseline", str(tiny_checkpoint), "--steps", "2", "--out", str(out)]
    args += ["--set", "eval.bootstrap_samples=20", "--set", "eval.grounding_angle_steps=12"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tasks"] == ["subject", "two_subject", "predict", "t2v"]
    for run in ("checkpoint", "baseline"):
        assert set(metrics[run]["tasks"]) == set(metrics["tasks"])
        subject = metrics[run]["tasks"]["subject"]["subject"]
        assert 0.0 <= subject["ci_low"] <= subject["mean"] <= subject["ci_high"] <= 1.0
        assert {"psnr", "ssim"} <= set(metrics[run]["tasks"]["predict"])
        assert len(metrics[run]["per_prompt"]) == 4
    # Same weights, same seeds: the baseline column reproduces the checkpoint's numbers.
    assert metrics["checkpoint"]["per_prompt"] == metrics["baseline"]["per_prompt"]
    page = (out / "report.html").read_text()
    assert page.count("<tr><td>") >= 4 and "ground truth" in page
    assert len(list((out / "media").glob("*.gif"))) == 4 * 3
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--task", "dance"], "--task dance: unknown task"),
        (["--checkpoint", "/nonexistent/ckpt"], "/nonexistent/ckpt"),
        (["--n", "0"], "--n 0"),
        (["--split", "valid"], "--split valid"),
    ],
)
def test_grounding_bad_inputs_exit_2_with_one_line(
    tiny_checkpoint, cli_world, tmp_path, capsys, extra, needle
):
    args = ["eval", "grounding", "--checkpoint", str(tiny_checkpoint), "--world", str(cli_world)]
    args += ["--out", str(tmp_path / "o"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_grounding_missing_world_and_fvd_missing_folder_exit_2(tiny_checkpoint, tmp_path, capsys):
    args = [
        "eval",
        "grounding",
        "--checkpoint",
        str(tiny_checkpoint),
        "--world",
        str(tmp_path / "noworld"),
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 2
    assert "noworld" in capsys.readouterr().err
    assert main(["eval", "fvd", "--real", str(tmp_path / "real"), "--fake", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--real" in err


def test_ucf101_missing_root_exits_2(tiny_checkpoint, tmp_path, capsys):
    assert (
        main(["eval", "ucf101", "--root", str(tmp_path / "UCF"), "--checkpoint", str(tiny_checkpoint)]) == 2
    )
    assert "UCF" in capsys.readouterr().err
