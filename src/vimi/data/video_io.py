"""Video IO with PyAV: probe, sample clips to [C, T, H, W] in [-1, 1], write mp4 (libx264) and GIF.

Frame indices are positions in decode order (0, 1, 2, ...), not timestamps: the clips vimi trains on
are constant frame rate, and counting frames is robust to odd container timestamps.
"""

import dataclasses
import io
import math
import random
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter
from PIL import Image

from vimi.data.image_io import (
    MediaSource,
    describe_source,
    from_uint8,
    open_source,
    resize_center_crop,
    to_uint8,
)
from vimi.errors import MediaError
from vimi.utils.atomic import atomic_path

Rng = random.Random | np.random.Generator | torch.Generator
# Pixel formats whose frames PyAV returns as RGB [H, W, 3] without a colour conversion.
_RGB_FORMATS = frozenset({"rgb24", "gbrp"})


@dataclass(frozen=True)
class VideoInfo:
    """What a reader needs to know before decoding: length, rate and frame size."""

    num_frames: int
    fps: float
    width: int
    height: int


def _open_container(source: MediaSource):
    """av.open that turns every failure into a MediaError naming the source."""
    name = describe_source(source)
    try:
        container = av.open(open_source(source), mode="r")
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError) as err:
        raise MediaError(
            f"{name}: cannot open video ({_cause(err)}); the file is truncated, corrupt or not a video"
        ) from None
    if not container.streams.video:
        container.close()
        raise MediaError(f"{name}: no video stream in the file")
    return container


def probe_video(source: MediaSource) -> VideoInfo:
    """Frame count, frame rate and size from the container; frames are counted by demuxing if unknown."""
    with _open_container(source) as container:
        stream = container.streams.video[0]
        info = _stream_info(stream)
        if info.num_frames > 0:
            return info
        # Some containers (GIF, WebM, raw streams) carry no count: demux packets, which skips decoding.
        return dataclasses.replace(
            info, num_frames=_count_packets(container, stream, describe_source(source))
        )


def scan_video(source: MediaSource) -> tuple[VideoInfo, int]:
    """(what the header says, how many frames the file holds): every video packet is read, none decoded.

    An interrupted download keeps a header that promises every frame while the file holds only the first
    ones; comparing the two finds it at the cost of one sequential read, far less than decoding."""
    with _open_container(source) as container:
        stream = container.streams.video[0]
        return _stream_info(stream), _count_packets(container, stream, describe_source(source))


def _stream_info(stream) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    return VideoInfo(num_frames=max(stream.frames, 0), fps=fps, width=stream.width, height=stream.height)


def _count_packets(container, stream, name: str) -> int:
    try:
        return sum(1 for packet in container.demux(stream) if packet.size > 0)
    except av.FFmpegError as err:
        raise MediaError(f"{name}: cannot read video packets ({_cause(err)}); the file is corrupt") from None


def clip_indices(
    available: int,
    num_frames: int,
    stride: int = 1,
    source_fps: float = 0.0,
    target_fps: float = 0.0,
    start: int | None = None,
    rng: Rng | None = None,
    loop: bool = False,
    name: str = "video",
) -> list[int]:
    """Source frame indices of a clip: every `stride` frames, or resampled to `target_fps` if > 0."""
    if num_frames < 1 or stride < 1:
        raise ValueError(f"num_frames and stride must be >= 1, got {num_frames}, {stride}")
    step = float(stride)
    if target_fps > 0:
        if source_fps <= 0:
            raise MediaError(f"{name}: frame rate unknown, cannot sample at target_fps={target_fps}")
        step = source_fps / target_fps
    offsets = [math.floor(i * step + 1e-6) for i in range(num_frames)]
    needed = offsets[-1] + 1
    if available < 1:
        raise MediaError(f"{name}: the video has no frames")
    if needed > available and not loop:
        raise MediaError(
            f"{name}: too short: {available} frames available, {needed} needed "
            f"({num_frames} frames, step {step:g}); use a shorter clip, a smaller stride, or loop=True"
        )
    latest_start = max(available - needed, 0)
    if start is None:
        start = _random_int(rng, latest_start) if rng is not None else 0
    elif not 0 <= start <= latest_start and not loop:
        raise MediaError(f"{name}: start={start} out of range: {available} frames, clip needs {needed}")
    # loop=True wraps around the end (a short video is played again from its first frame).
    return [(start + offset) % available for offset in offsets]


def _random_int(rng: Rng, high: int) -> int:
    """Uniform integer in [0, high] from any of the generators the project uses."""
    if isinstance(rng, torch.Generator):
        return int(torch.randint(0, high + 1, (1,), generator=rng).item())
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(0, high + 1))
    return rng.randint(0, high)


def decode_frames(source: MediaSource, indices: list[int], size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode the frames at `indices` (any order, repeats allowed) as uint8 [T, H, W, 3]."""
    name = describe_source(source)
    wanted = set(indices)
    last = max(indices)
    frames: dict[int, np.ndarray] = {}
    decoded = 0
    reformatter = VideoReformatter()  # one per clip: it keeps its colour-conversion context between frames
    with _open_container(source) as container:
        stream = container.streams.video[0]
        if stream.width * stream.height >= 128 * 128:
            # Frame + slice threads pay off on real footage; on tiny clips their start-up cost dominates.
            stream.thread_type = "AUTO"
        else:
            # FFmpeg would still start a slice thread per core for each clip: 4x the wall time of a 32x32 clip.
            stream.codec_context.thread_count = 1
        try:
            for index, frame in enumerate(container.decode(stream)):
                decoded = index + 1
                if index in wanted:  # converted only for frames we keep
                    pixels = _rgb_array(frame, reformatter)
                    if size is not None and size != pixels.shape[:2]:
                        pixels = np.asarray(resize_center_crop(Image.fromarray(pixels), size))
                    frames[index] = pixels
                if index >= last:
                    break
        except av.FFmpegError as err:
            raise MediaError(
                f"{name}: decoding failed after frame {decoded} ({_cause(err)}); the file is truncated or corrupt"
            ) from None
    if len(frames) < len(wanted):
        raise MediaError(
            f"{name}: truncated: the file ends after {decoded} frames but frame {last} was needed "
            "(its header claims more); re-encode or re-download it"
        )
    return np.stack([frames[i] for i in indices])


def _rgb_array(frame: av.VideoFrame, reformatter: VideoReformatter) -> np.ndarray:
    """uint8 [H, W, 3] RGB. RGB-like frames (the lossless clips vimi writes are gbrp) are copied out as they
    are; others go through `reformatter`, whose swscale context is reused (frame.to_image() builds a new one
    per frame, most of a small frame's decoding time: benchmarks/decode.py)."""
    if frame.format.name in _RGB_FORMATS:
        return frame.to_ndarray()  # gbrp planes come back reordered to [H, W, (R, G, B)]
    return reformatter.reformat(frame, format="rgb24").to_ndarray()


def read_video(
    source: MediaSource,
    num_frames: int,
    stride: int = 1,
    target_fps: float = 0.0,
    start: int | None = None,
    rng: Rng | None = None,
    size: tuple[int, int] | None = None,
    loop: bool = False,
) -> torch.Tensor:
    """Read a clip as float32 [C, T, H, W] in [-1, 1] (start: given, random from `rng`, else 0)."""
    info = probe_video(source)
    indices = clip_indices(
        info.num_frames, num_frames, stride, info.fps, target_fps, start, rng, loop, describe_source(source)
    )
    return from_uint8(decode_frames(source, indices, size))  # [T, H, W, C] -> [C, T, H, W]


def write_mp4(
    video: torch.Tensor, path: str | Path, fps: int = 8, lossless: bool = False, crf: int = 18
) -> Path:
    """Write [C, T, H, W] in [-1, 1] as H.264 mp4, atomically; `lossless` round-trips uint8 frames exactly.

    Lossy: libx264, yuv420p (yuv444p when a side is odd, which 4:2:0 cannot hold), `crf` quality.
    Lossless: libx264rgb at crf 0 encodes RGB directly, so no colour conversion or subsampling loses bits.
    """
    frames = _video_frames(video)  # [T, H, W, 3] uint8
    height, width = frames.shape[1:3]
    if lossless:
        codec, pix_fmt, options = "libx264rgb", "rgb24", {"crf": "0", "preset": "medium"}
    else:
        pix_fmt = "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p"
        codec, options = "libx264", {"crf": str(crf), "preset": "medium"}
    path = Path(path)
    try:
        # faststart puts the index first so browsers (the web UI) can play while loading.
        with (
            atomic_path(path) as tmp,
            av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container,
        ):
            stream = container.add_stream(codec, rate=fps, options=options)
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            for frame in frames:
                av_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
                container.mux(stream.encode(av_frame))
            container.mux(stream.encode())  # flush the encoder's delayed frames
    except av.FFmpegError as err:
        raise MediaError(f"{path}: cannot write mp4 ({_cause(err)})") from None
    return path


def gif_bytes(video: torch.Tensor, fps: int = 8) -> bytes:
    """A looping GIF89a of [C, T, H, W] in [-1, 1], in memory (Pillow, one 256-colour palette per frame)."""
    return encode_gif([Image.fromarray(frame) for frame in _video_frames(video)], fps)  # T x [H, W, C]


def encode_gif(images: list[Image.Image], fps: int = 8) -> bytes:
    """A looping GIF89a of the frames `images`, in memory."""
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(round(1000 / fps), 20),  # browsers clamp delays below 20 ms
        loop=0,
    )
    return buffer.getvalue()


def write_gif(video: torch.Tensor, path: str | Path, fps: int = 8) -> Path:
    """Write [C, T, H, W] in [-1, 1] as a looping GIF (see `gif_bytes`), atomically."""
    path = Path(path)
    data = gif_bytes(video, fps)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def _cause(err: Exception) -> str:
    """FFmpeg's reason without the path PyAV appends (the message already names the file)."""
    return getattr(err, "strerror", None) or str(err)


def _video_frames(video: torch.Tensor) -> np.ndarray:
    if video.ndim != 4 or video.shape[0] != 3 or video.shape[1] < 1:
        raise ValueError(f"expected a video [3, T, H, W] with T >= 1, got shape {tuple(video.shape)}")
    return to_uint8(video)  # [C, T, H, W] -> [T, H, W, C]
