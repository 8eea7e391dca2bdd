"""`vimi eval grounding|sensitivity|fvd|ucf101`: a tiny real checkpoint end to end, and bad inputs exiting 2 with a reason."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from vimi.cli import main
from vimi.config import RetrievalConfig, WorldConfig
from vimi.data.video_io import read_video, write_mp4
from vimi.data.world import build_world
from vimi.retrieval import build_index


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
    args += [
        "--task",
        "all",
        "--baseline",
        str(tiny_checkpoint),
        "--num-inference-steps",
        "2",
        "--out",
        str(out),
    ]
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
        for record in metrics[run]["per_prompt"]:  # what was asked and what the scorer read, per prompt
            assert len(record["truth"]["subjects"]) == (2 if record["task"] == "two_subject" else 1)
            if "scene" in record["predicted"]:  # read only when the background matches a scene at all
                assert record["scene"] == float(record["predicted"]["scene"] == record["truth"]["scene"])
            if record["task"] == "subject":  # [] when no subject was drawn clearly
                assert isinstance(record["predicted"]["subjects"], list)
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
        (["--device", "gpu"], "device 'gpu' is not a device name"),
        (["--set", "eval.device=tpu"], "device 'tpu' is not a device name"),
        (["--set", "eval.tasks=[subject,dance]"], "dance: unknown task"),  # eval.tasks is the --task default
        (["--set", "sample.num_frames=4"], "--set sample.num_frames=4: an evaluation samples at the world's"),
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


def test_grounding_sampling_overrides_reach_the_pipeline(tiny_checkpoint, cli_world, tmp_path, monkeypatch):
    from vimi.pipeline import VimiPipeline

    calls = []
    original = VimiPipeline.__call__

    def recording(self, *args, **kwargs):
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VimiPipeline, "__call__", recording)
    out = tmp_path / "eval"
    args = ["eval", "grounding", "--checkpoint", str(tiny_checkpoint), "--world", str(cli_world), "--n", "1"]
    args += [
        "--task",
        "subject",
        "--num-inference-steps",
        "2",
        "--out",
        str(out),
        "--set",
        "eval.bootstrap_samples=20",
    ]
    args += [
        "--set",
        "sample.guidance_text=1.5",
        "--set",
        "sample.sampler=euler",
        "--set",
        "sample.num_inference_steps=9",
    ]
    assert main(args) == 0
    assert (
        calls
        and all(
            (c["guidance_text"], c["sampler"], c["num_inference_steps"]) == (1.5, "euler", 2)
            and "guidance_image" not in c
            for c in calls
        )
    )  # --num-inference-steps wins over sample.num_inference_steps; what was not set stays the checkpoint's own
    recorded = json.loads((out / "metrics.json").read_text())["sampling"]
    assert recorded == {"guidance_text": 1.5, "sampler": "euler", "num_inference_steps": 2}


def test_sensitivity_prints_and_writes_rows_on_a_real_checkpoint(
    tiny_checkpoint, cli_world, tmp_path, capsys
):
    out = tmp_path / "sens.json"
    args = ["eval", "sensitivity", "--checkpoint", str(tiny_checkpoint), "--world", str(cli_world)]
    args += ["--n", "4", "--sigmas", "10,1", "--swap", "prompts", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "4 subject samples" in printed and "swapped prompts" in printed
    result = json.loads(out.read_text())
    assert [row["sigma"] for row in result["rows"]] == [10.0, 1.0]
    assert result["changed"] == 4
    # The fixture's perturbed weights read the prompt, so another prompt changes the error.
    assert all(row["error_swapped"] != row["error_right"] for row in result["rows"])
    assert all(row["gain_low"] <= row["gain_high"] for row in result["rows"]) and "95% CI" in printed


def test_sensitivity_swaps_the_motion_words_of_prediction_prompts(
    tiny_checkpoint, cli_world, tmp_path, capsys
):
    out = tmp_path / "sens.json"
    args = ["eval", "sensitivity", "--checkpoint", str(tiny_checkpoint), "--world", str(cli_world)]
    args += ["--task", "predict", "--n", "4", "--sigmas", "10", "--swap", "motions", "--out", str(out)]
    assert main(args) == 0
    assert "swapped motions" in capsys.readouterr().out
    result = json.loads(out.read_text())
    # Every world caption names its motion; the fixture's weights read the text, so reversing it tells.
    assert result["changed"] == 4 and result["swap"] == "motions"
    assert result["rows"][0]["error_swapped"] != result["rows"][0]["error_right"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--sigmas", "10,x"], "--sigmas '10,x'"),
        (["--sigmas", "0"], "all > 0"),
        (["--n", "1"], "--n 1"),
        (["--task", "retrieval_t2v"], "data.train_manifest"),
    ],
)
def test_sensitivity_bad_inputs_exit_2_with_one_line(tiny_checkpoint, cli_world, capsys, extra, needle):
    args = ["eval", "sensitivity", "--checkpoint", str(tiny_checkpoint), "--world", str(cli_world)]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


def test_sensitivity_reads_a_training_checkpoints_raw_weights_on_request(
    tiny_checkpoint, cli_world, tmp_path, capsys
):
    from safetensors.torch import load_file, save_file

    args = [
        "eval",
        "sensitivity",
        "--world",
        str(cli_world),
        "--n",
        "4",
        "--sigmas",
        "10",
        "--swap",
        "prompts",
    ]
    assert main([*args, "--checkpoint", str(tiny_checkpoint), "--weights", "raw"]) == 2  # a pipeline folder
    assert "no raw weights" in capsys.readouterr().err
    # A training checkpoint: EMA weights at the top, raw ones (here: other values) in train_state/.
    trained = tmp_path / "step-00000010"
    shutil.copytree(tiny_checkpoint, trained)
    (trained / "train_state").mkdir()
    raw = {k: v * 0.5 for k, v in load_file(trained / "model.safetensors").items()}
    save_file(raw, trained / "train_state" / "model.safetensors")
    errors = {}
    for weights in ("ema", "raw"):
        out = tmp_path / f"{weights}.json"
        assert main([*args, "--checkpoint", str(trained), "--weights", weights, "--out", str(out)]) == 0
        errors[weights] = json.loads(out.read_text())["rows"][0]["error_right"]
    capsys.readouterr()
    assert errors["ema"] != errors["raw"]


def test_sensitivity_refuses_image_swaps_for_a_text_only_checkpoint(tiny_checkpoint, tmp_path, capsys):
    text_only = tmp_path / "text-only"
    shutil.copytree(tiny_checkpoint, text_only)
    config = json.loads((text_only / "config.json").read_text())
    config["model"]["text_only"] = True
    (text_only / "config.json").write_text(json.dumps(config))
    assert main(["eval", "sensitivity", "--checkpoint", str(text_only)]) == 2
    assert "use --swap prompts" in capsys.readouterr().err


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
    args = [
        "eval",
        "ucf101",
        "--root",
        str(tmp_path),
        "--checkpoint",
        str(tiny_checkpoint),
        "--device",
        "gpu",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "device 'gpu'" in err


# End-to-end runs of the real feature networks (I3D Kinetics-400) on tiny inputs ----------------------
FVD_FRAMES = 9  # I3D's fewest frames


def _write_clips(folder: Path, clips: list[torch.Tensor]) -> Path:
    folder.mkdir(parents=True)
    for i, clip in enumerate(clips):
        write_mp4(clip, folder / f"clip{i}.mp4", fps=8)
    return folder


@pytest.fixture(scope="module")
def fvd_folders(tmp_path_factory, real_clip) -> dict[str, Path]:
    """real/, real_copy/ (the same files) and noise/: 3 clips each of 9 frames at 72x88."""
    root = tmp_path_factory.mktemp("fvd")
    real = [read_video(real_clip, FVD_FRAMES, start=start, size=(72, 88)) for start in (0, 40, 80)]
    noise = [
        torch.rand(3, FVD_FRAMES, 72, 88, generator=torch.Generator().manual_seed(s)) * 2 - 1
        for s in range(3)
    ]
    folders = {"real": _write_clips(root / "real", real), "noise": _write_clips(root / "noise", noise)}
    folders["real_copy"] = root / "real_copy"
    shutil.copytree(folders["real"], folders["real_copy"])
    return folders


@pytest.mark.slow
def test_fvd_of_real_copy_is_far_below_real_vs_noise(fvd_folders, tmp_path, capsys):
    results = {}
    for fake in ("real_copy", "noise"):
        out = tmp_path / f"{fake}.json"
        args = ["eval", "fvd", "--real", str(fvd_folders["real"]), "--fake", str(fvd_folders[fake])]
        args += ["--frames", str(FVD_FRAMES), "--out", str(out), "--set", "eval.device=cpu"]
        assert main(args) == 0
        results[fake] = json.loads(out.read_text())
        # The printed line is the JSON written to --out.
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == results[fake]
    for result in results.values():
        assert result["num_real"] == 3 and result["num_fake"] == 3 and result["frames"] == FVD_FRAMES
        assert math.isfinite(result["fvd"])
    assert abs(results["real_copy"]["fvd"]) < 1.0
    assert results["noise"]["fvd"] > 100 * max(abs(results["real_copy"]["fvd"]), 1.0)


@pytest.mark.parametrize(
    ("frames", "needle"),
    [("4", "--frames 4: I3D needs at least 9"), ("12", "9 frames, fewer than --frames 12")],
)
def test_fvd_too_few_frames_exits_2_naming_the_input(fvd_folders, capsys, frames, needle):
    args = ["eval", "fvd", "--real", str(fvd_folders["real"]), "--fake", str(fvd_folders["noise"])]
    assert main([*args, "--frames", frames, "--set", "eval.device=cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


@pytest.fixture(scope="module")
def tiny_ucf101(tmp_path_factory, real_clip) -> Path:
    """2 CamelCase class folders x 2 clips of 9 frames at 72x88, cut from carphone_pristine.mp4."""
    root = tmp_path_factory.mktemp("ucf") / "UCF-101"
    for folder, starts in {"ApplyEyeMakeup": (0, 20), "YoYo": (60, 90)}.items():
        clips = [read_video(real_clip, FVD_FRAMES, start=start, size=(72, 88)) for start in starts]
        for index, clip in enumerate(clips):
            (root / folder).mkdir(parents=True, exist_ok=True)
            write_mp4(clip, root / folder / f"v_{folder}_g01_c0{index + 1}.mp4", fps=25)
    return root


@pytest.mark.slow
def test_ucf101_runs_the_protocol_on_a_tiny_tree_with_a_checkpoint(
    tiny_checkpoint, tiny_ucf101, tmp_path, capsys
):
    out = tmp_path / "ucf"
    args = ["eval", "ucf101", "--root", str(tiny_ucf101), "--checkpoint", str(tiny_checkpoint)]
    args += ["--out", str(out), "--device", "cpu"]
    overrides = {
        "eval.ucf_videos_per_class": 1,
        "eval.ucf_num_frames": FVD_FRAMES,
        "eval.batch_size": 2,
        "eval.device": "cpu",
        "eval.stats_cache_dir": tmp_path / "stats",  # never the default outputs/fid_stats
        "eval.ucf_prompt_template": "a video of {name}",
    }
    for key, value in overrides.items():
        args += ["--set", f"{key}={value}"]
    assert main(args) == 0
    results = json.loads((out / "ucf101.json").read_text())
    assert math.isfinite(results["fvd"]) and results["fvd"] >= 0
    assert results["num_classes"] == 2 and results["num_generated"] == 2 and results["num_real"] == 4
    assert results["example_prompts"] == ["a video of apply eye makeup", "a video of yo yo"]
    assert results["inception_score"].startswith("not computed") and "c3d_path" in results["inception_score"]
    assert results["protocol"]["num_frames"] == FVD_FRAMES and not results["real_stats_cached"]
    assert len(list((tmp_path / "stats").iterdir())) >= 1  # the real statistics went to the given cache
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["fvd"] == results["fvd"] and "protocol" not in printed


# Retrieval-grounded t2v ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_index(cli_world, tmp_path_factory) -> Path:
    """A BM25 index of the world's memory (image-text corpus)."""
    out = tmp_path_factory.mktemp("index") / "index"
    build_index(cli_world / "memory", out, RetrievalConfig(), progress=False)
    return out


@pytest.fixture(scope="module")
def few_examples_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint retrieving 2 examples per prompt: 4 overflow its 256 condition tokens."""
    folder = tmp_path_factory.mktemp("ckpt") / "tiny-k2"
    shutil.copytree(tiny_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    config["sample"]["retrieved_examples"] = (
        2  # the pipeline retrieves with its checkpoint's config, not the CLI's
    )
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_grounding_t2v_with_index_conditions_on_retrieved_images(
    few_examples_checkpoint, cli_world, cli_index, tmp_path
):
    out = tmp_path / "eval"
    args = ["eval", "grounding", "--checkpoint", str(few_examples_checkpoint), "--world", str(cli_world)]
    args += [
        "--task",
        "t2v",
        "--index",
        str(cli_index),
        "--n",
        "2",
        "--num-inference-steps",
        "2",
        "--out",
        str(out),
    ]
    args += ["--set", "eval.bootstrap_samples=20", "--set", "eval.grounding_angle_steps=12"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tasks"] == ["t2v"] and set(metrics["checkpoint"]["tasks"]) == {"t2v"}
    per_prompt = metrics["checkpoint"]["per_prompt"]
    assert len(per_prompt) == 2 and all(p["task"] == "t2v" for p in per_prompt)
    # The recorded prompt is the one the model saw: retrieved examples (text + <image>) before the caption.
    for prompt in per_prompt:
        assert prompt["text"].count("<image>") >= 1 and "+ " in prompt["text"], prompt["text"]
    # The report shows the retrieved images, and they are images of the world's memory.
    memory = {p.read_bytes() for p in (cli_world / "memory").rglob("*.png")}
    shown = sorted((out / "media").glob("t2v-*-prompt*.png"))
    assert len(shown) == sum(p["text"].count("<image>") for p in per_prompt)
    assert all(p.read_bytes() in memory for p in shown)
