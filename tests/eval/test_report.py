"""The HTML report: one row per prompt, escaped text, existing media, runs side by side."""

import html
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vimi.config import EvalConfig, WorldConfig
from vimi.data.world import GroundedWorld, build_world, load_world
from vimi.eval.bench import TASKS, build_items, run_benchmark
from vimi.eval.report import write_report, write_strip_gif
from vimi.prompt import MultimodalPrompt, Text


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> GroundedWorld:
    out = tmp_path_factory.mktemp("report") / "world"
    build_world(WorldConfig(preset="tiny", seed=2, num_heldout_videos=24, num_train_videos=4), out)
    return load_world(out)


def truth_generator(world: GroundedWorld):
    """A fake generate_fn that returns each prompt's own ground-truth clip (found by the prompt's text)."""
    by_text = {
        item.prompt.placeholder_text: item.record
        for task in TASKS
        for item in build_items(world, task, "heldout", 100)
    }

    def generate(prompts, first_frames, seeds, index):
        return torch.stack([_video(world, by_text[p.placeholder_text]) for p in prompts])

    return generate


def _video(world, record) -> torch.Tensor:
    frames = world.render_ground_truth(record)  # [T, H, W, 3]
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1  # -> [C, T, H, W]


def noise_generator(prompts, first_frames, seeds, index):
    generator = torch.Generator().manual_seed(seeds[0])
    return torch.rand(len(prompts), 3, 8, 32, 32, generator=generator) * 2 - 1


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.sources, self.scripts = 0, [], 0

    def handle_starttag(self, tag, attrs):
        self.rows += tag == "tr"
        self.scripts += tag == "script"
        self.sources += [value for name, value in attrs if tag == "img" and name == "src"]


def test_report_has_one_row_per_prompt_escaped_text_and_existing_media(small_world, tmp_path):
    cfg = EvalConfig(n=2, batch_size=3, bootstrap_samples=50)
    ours = run_benchmark(small_world, truth_generator(small_world), TASKS, cfg)
    baseline = run_benchmark(small_world, noise_generator, TASKS, cfg)
    assert {item.task for item in ours.items} == set(TASKS)
    # A caption a user could write: markup must come out as text, never as tags.
    hostile = "<script>alert('x')</script> & <b>bold</b>"
    ours.items[0].prompt = MultimodalPrompt([Text(hostile)], "t2v")
    path = write_report(tmp_path / "out", {"vimi": ours, "text-only": baseline})

    page = path.read_text(encoding="utf-8")
    parsed = _Collector()
    parsed.feed(page)
    count = len(ours.items)
    summary_rows = (
        1
        + sum(len(m) for m in ours.summary["tasks"].values())
        + sum(len(m) for m in baseline.summary["tasks"].values())
    )
    assert parsed.rows == 1 + count + summary_rows  # header + one per prompt + the summary table
    assert (
        parsed.scripts == 0
        and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    )
    for src in parsed.sources:
        assert not Path(src).is_absolute() and (path.parent / src).is_file(), src
    gifs = [s for s in parsed.sources if s.endswith(".gif")]
    assert len(gifs) == 3 * count  # two runs side by side + the ground truth
    pngs = [s for s in parsed.sources if s.endswith(".png")]
    assert len(pngs) >= count - 2  # prompt images (subject) and first frames (predict); t2v has none
    assert page.count("metrics: vimi") == 1 and page.count("metrics: text-only") == 1
    # A prediction row shows the instruction the model got, the first frame in its place.
    predict = next(item for item in ours.items if item.task == "predict")
    assert predict.text.startswith("Generate a video with the text and first frame: <image>")
    assert html.escape(predict.text) in page and len(predict.model_prompt.images) == 1
    # Ground truth as the generated video scores far higher than noise on the subject task.
    assert ours.summary["tasks"]["subject"]["scene"]["mean"] == 1.0
    assert baseline.summary["tasks"]["subject"]["scene"]["mean"] == 0.0
    # The forced choices sit beside the gated metrics, each with its chance level to read it against.
    for metric in ("subject_choice", "motion_choice"):
        value = next(values[metric] for values in ours.summary["tasks"].values() if metric in values)
        chance = ours.summary["chance"][metric]
        assert value["valid"] and f"<td>{metric}</td><td>{value['mean']:.3f} [" in page
        assert f", chance {chance:.3f}</td>" in page and f"{metric} <span class='bar'>" in page
    widths = [int(w) for w in re.findall(r"width:(\d+)%", page)]
    assert widths and all(0 <= w <= 100 for w in widths)
    # The strip beside the report shows the first subject prompt (here its images were replaced by the
    # hostile caption above): the generated video and the truth side by side, one GIF frame per video frame.
    with Image.open(path.parent / "strip.gif") as strip:
        assert strip.format == "GIF" and strip.size[0] > 2 * 4 * 32 and strip.n_frames > 1


def test_report_rejects_runs_of_different_prompts(small_world, tmp_path):
    cfg = EvalConfig(n=1, bootstrap_samples=10)
    one = run_benchmark(small_world, noise_generator, ["subject"], cfg)
    other = run_benchmark(small_world, noise_generator, ["t2v"], cfg)
    with pytest.raises(ValueError, match="other prompts"):
        write_report(tmp_path / "bad", {"a": one, "b": other})


def test_summary_has_confidence_intervals_around_the_mean(small_world):
    result = run_benchmark(
        small_world, truth_generator(small_world), ["predict"], EvalConfig(n=3, bootstrap_samples=100)
    )
    metrics = result.summary["tasks"]["predict"]
    for name in ("scene", "psnr", "ssim"):
        value = metrics[name]
        assert value["ci_low"] <= value["mean"] <= value["ci_high"] and value["n"] == 3
    assert np.isclose(metrics["psnr"]["mean"], 100.0) and np.isclose(metrics["ssim"]["mean"], 1.0)


def test_psnr_copy_is_the_floor_of_holding_the_given_frame(small_world):
    truth = truth_generator(small_world)

    def hold_first_frame(prompts, first_frames, seeds, index):
        videos = truth(prompts, first_frames, seeds, index)  # [B, C, T, H, W]
        return videos[:, :, :1].expand_as(videos).clone()

    cfg = EvalConfig(n=6, bootstrap_samples=10)
    held = run_benchmark(small_world, hold_first_frame, ["predict"], cfg)
    exact = run_benchmark(small_world, truth, ["predict"], cfg)
    for held_score, exact_score in zip(held.scores, exact.scores):
        # Holding the frame scores exactly the floor; the true continuation scores the cap; noise far below.
        assert held_score.psnr == pytest.approx(held_score.psnr_copy)
        assert exact_score.psnr == 100.0 and exact_score.psnr_copy == pytest.approx(held_score.psnr_copy)
        # The gain over the copy: none for the copy itself; only on clips that move (a still clip's copy is exact).
        moving = exact_score.psnr_copy < 100.0
        assert (held_score.psnr_gain is not None) == moving == (exact_score.psnr_gain is not None)
        if moving:
            assert held_score.psnr_gain == pytest.approx(0.0, abs=1e-9)
            assert exact_score.psnr_gain == pytest.approx(100.0 - exact_score.psnr_copy)
    assert min(s.psnr_copy for s in exact.scores) < 40  # the world's subjects move: the floor is not the cap
    noise = run_benchmark(small_world, noise_generator, ["predict"], cfg)
    assert all(s.psnr < s.psnr_copy for s in noise.scores)
    assert all(s.psnr_gain < 0 for s in noise.scores if s.psnr_gain is not None)
    assert {"psnr_copy", "psnr_gain"} <= set(exact.summary["tasks"]["predict"])


def solid_video(colours: list[tuple[int, int, int]], size: int = 8) -> torch.Tensor:
    """A [3, T, size, size] video in [-1, 1] whose frame t is the solid uint8 colour colours[t]."""
    frames = torch.tensor(colours, dtype=torch.float32)[:, :, None, None].expand(-1, -1, size, size)
    return (frames / 127.5 - 1).permute(1, 0, 2, 3).contiguous()  # [T, 3, H, W] -> [3, T, H, W]


def gif_frames(path: Path) -> list[np.ndarray]:
    with Image.open(path) as image:
        frames = []
        for i in range(image.n_frames):
            image.seek(i)
            frames.append(np.asarray(image.convert("RGB")).astype(int))
    return frames


def pixels_of(frame: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int((np.abs(frame - np.array(colour)).max(axis=-1) <= 2).sum())


def test_strip_gif_shows_the_prompt_image_and_each_frame_of_video_and_truth(tmp_path):
    """Frame t of the strip holds frame t of the generated video and of the truth, each enlarged `scale`
    times, and the prompt image in every frame; no other frame's colour leaks in."""
    steps = 5
    generated = [(200, 30 * t, 20) for t in range(steps)]
    truth = [(20, 40 + 30 * t, 220) for t in range(steps)]
    image_colour = (250, 250, 0)
    image = solid_video([image_colour], size=16)[:, 0]  # [3, 16, 16]: resized to the video's 8x8
    path = write_strip_gif(
        tmp_path / "strip.gif",
        solid_video(generated),
        [image],
        truth=solid_video(truth),
        text="A <image> moves left across the snowfield, a caption long enough to wrap onto a second line",
        scale=4,
    )
    frames = gif_frames(path)
    assert len(frames) == steps
    height, width, _ = frames[0].shape
    assert all(f.shape == frames[0].shape for f in frames)
    assert width >= 3 * 8 * 4 and height >= 8 * 4 + 2 * 12  # three panels; text and labels above and below
    panel = (8 * 4) ** 2
    for t, frame in enumerate(frames):
        assert pixels_of(frame, image_colour) == panel
        assert pixels_of(frame, generated[t]) == panel and pixels_of(frame, truth[t]) == panel
        for other in set(range(steps)) - {t}:
            assert pixels_of(frame, generated[other]) == 0 and pixels_of(frame, truth[other]) == 0


def test_strip_gif_grows_with_the_prompt_images_and_names_a_mismatched_truth(tmp_path):
    video = solid_video([(10, 10, 10), (90, 90, 90)])
    image = solid_video([(250, 0, 0)])[:, 0]
    one = write_strip_gif(tmp_path / "one.gif", video, [image])
    two = write_strip_gif(tmp_path / "two.gif", video, [image, image])
    (w1, h1), (w2, h2) = (Image.open(one).size, Image.open(two).size)
    assert h1 == h2 and w2 - w1 == 8 * 4 + 8  # one more panel and its margin
    with pytest.raises(ValueError, match="truth has shape"):
        write_strip_gif(tmp_path / "bad.gif", video, truth=solid_video([(0, 0, 0)] * 3))
    assert not (tmp_path / "bad.gif").exists()
