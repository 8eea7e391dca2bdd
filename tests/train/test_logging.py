"""RunLogger: sample videos reach TensorBoard as real (animated GIF) video summaries; metrics JSONL on resume."""

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence
from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

from vimi.data.image_io import to_uint8
from vimi.train.logging import RunLogger, gif_bytes, read_metrics

T, H, W = 5, 12, 20


def moving_square_video(frames: int = T) -> torch.Tensor:
    """[3, T, H, W] in [-1, 1]: a bright square sliding right over a dark gradient, so every frame differs."""
    video = torch.linspace(-1, -0.2, W).expand(3, frames, H, W).clone()
    for t in range(frames):
        video[:, t, 3:9, 2 + 3 * t : 8 + 3 * t] = torch.tensor([0.9, 0.2, -0.5])[:, None, None]
    return video


def decode_gif(data: bytes) -> list[np.ndarray]:
    with Image.open(io.BytesIO(data)) as gif:
        return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]


def read_image_events(tb_dir) -> dict[str, list]:
    events = EventAccumulator(str(tb_dir), size_guidance={IMAGES: 0})  # 0 = keep every image event
    events.Reload()
    return {tag: events.Images(tag) for tag in events.Tags()[IMAGES]}


def test_gif_bytes_decode_to_every_frame_with_palette_accuracy():
    video = moving_square_video()
    data = gif_bytes(video, fps=8)
    assert data.startswith(b"GIF89a")
    frames = decode_gif(data)
    expected = to_uint8(video)  # [T, H, W, C]
    assert len(frames) == T and frames[0].shape == (H, W, 3)
    # 256-colour palette per frame: a few levels of error at most, and the square is where it should be.
    error = np.abs(np.stack(frames).astype(int) - expected.astype(int))
    assert error.max() <= 8, error.max()


def test_log_videos_writes_files_and_tensorboard_video_summaries(tmp_path):
    logger = RunLogger(tmp_path, start_step=0, total_steps=10, enabled=True, progress=False)
    videos = {"0-pretrain": moving_square_video(), "1-subject": -moving_square_video(3)}
    written = logger.log_videos(7, videos, fps=4)
    logger.close()
    assert sorted(p.name for p in written) == [
        "step00000007-0-pretrain.gif",
        "step00000007-0-pretrain.mp4",
        "step00000007-1-subject.gif",
        "step00000007-1-subject.mp4",
    ]

    images = read_image_events(tmp_path / "tensorboard")
    assert sorted(images) == ["samples/0-pretrain", "samples/1-subject"]
    for tag, frames in (("samples/0-pretrain", T), ("samples/1-subject", 3)):
        (event,) = images[tag]
        assert event.step == 7 and (event.height, event.width) == (H, W)
        assert event.encoded_image_string.startswith(b"GIF89a")  # what TensorBoard plays as a video
        decoded = decode_gif(event.encoded_image_string)
        assert len(decoded) == frames and all(f.shape == (H, W, 3) for f in decoded)


def test_gif_bytes_names_a_bad_shape():
    with pytest.raises(ValueError, match=r"\[3, T, H, W\].*\(4, 3, 8, 8\)"):
        gif_bytes(torch.zeros(4, 3, 8, 8), fps=8)


def test_resumed_logger_drops_metrics_past_the_resumed_step(tmp_path):
    first = RunLogger(tmp_path, start_step=0, total_steps=6, enabled=True, progress=False)
    for step in range(1, 7):
        first.log_step(step, {"loss": 1.0 / step}, write=True)
    first.close()
    resumed = RunLogger(tmp_path, start_step=3, total_steps=6, enabled=True, progress=False)
    resumed.log_step(4, {"loss": 0.5}, write=True)
    resumed.close()
    metrics = read_metrics(tmp_path)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert metrics[-1]["loss"] == 0.5 and all("steps_per_s" in m for m in metrics)


def test_torn_last_metrics_line_does_not_block_resume(tmp_path, caplog):
    first = RunLogger(tmp_path, start_step=0, total_steps=6, enabled=True, progress=False)
    for step in range(1, 4):
        first.log_step(step, {"loss": 1.0 / step}, write=True)
    first.close()
    with open(tmp_path / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 4, "loss": 0.2')  # the run was killed mid-write
    assert [m["step"] for m in read_metrics(tmp_path)] == [1, 2, 3]
    with caplog.at_level("WARNING", logger="vimi.train.logging"):
        resumed = RunLogger(tmp_path, start_step=3, total_steps=6, enabled=True, progress=False)
    assert "metrics.jsonl line 4 is not a metrics record" in caplog.text
    resumed.log_step(4, {"loss": 0.5}, write=True)
    resumed.close()
    assert [(m["step"], m["loss"]) for m in read_metrics(tmp_path)][2:] == [(3, 1.0 / 3), (4, 0.5)]
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 4  # the torn line is gone


def test_write_gif_writes_exactly_gif_bytes(tmp_path):
    from vimi.data.video_io import write_gif

    video = moving_square_video()
    path = write_gif(video, tmp_path / "clip.gif", fps=4)
    assert path.read_bytes() == gif_bytes(video, fps=4)
    assert len(decode_gif(path.read_bytes())) == T and not list(tmp_path.glob(".*.tmp"))
