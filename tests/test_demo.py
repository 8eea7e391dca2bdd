"""`vimi demo` end to end on a tiny world and the tiny random checkpoint: files, metrics, reuse, errors."""

import json

import av
import pytest

from vimi.cli import main


@pytest.mark.slow
def test_demo_writes_report_videos_and_metrics(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "demo"
    args = [
        "demo",
        "--out",
        str(out),
        "--checkpoint",
        str(tiny_checkpoint),
        "--n",
        "1",
        "--num-inference-steps",
        "2",
    ]
    assert main([*args, "--set", "world.preset=tiny"]) == 0
    printed = capsys.readouterr().out
    report = out / "report" / "report.html"
    assert str(report.resolve()) in printed.replace("\n", "")

    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert {"subject", "predict", "t2v"} <= set(metrics["vimi"]["tasks"])
    assert metrics["split"] == "heldout"
    prompts = metrics["vimi"]["per_prompt"]
    html = report.read_text()
    for prompt in prompts:  # one report row and one mp4 + gif per generated video
        stem = prompt["id"]
        mp4 = out / "report" / "videos" / "vimi" / f"{stem}.mp4"
        assert (mp4.with_suffix(".gif")).is_file()
        with av.open(str(mp4)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == 8 and frames[0].shape == (32, 32, 3)  # the tiny world's 8 x 32 x 32
        assert prompt["id"] in html

    # The method's data step ran: a multimodal-prompt dataset with interleaved images.
    assert (out / "prompts" / "manifest.json").is_file()
    assert "preset: tiny" in (out / "config.yaml").read_text()  # the resolved config beside the outputs

    # A second run reuses the world and the index instead of rebuilding them.
    world_stamp = (out / "world" / "world.json").stat().st_mtime_ns
    index_stamp = (out / "index" / "index.json").stat().st_mtime_ns
    assert main([*args, "--set", "world.preset=tiny"]) == 0
    assert (out / "world" / "world.json").stat().st_mtime_ns == world_stamp
    assert (out / "index" / "index.json").stat().st_mtime_ns == index_stamp


def test_demo_rejects_a_missing_checkpoint(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path), "--checkpoint", str(tmp_path / "nope")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0] and "--train" in err[0]
