"""Writing the world's media: lossless mp4 clips and PNG images straight from uint8 arrays.

vimi.data.video_io.write_mp4 takes float tensors and makes every file atomic with an fsync; a world
writes thousands of tiny files into a staging folder that is renamed into place only when complete,
so here the files are written directly (same codec settings: libx264rgb, crf 0, RGB, lossless).
"""

from pathlib import Path

import av
import numpy as np
from PIL import Image

from vimi.errors import MediaError

# crf 0 on libx264rgb is mathematically lossless: decoded rgb24 frames equal the rendered ones bit
# for bit (tests/data/world checks it). One thread keeps the output bytes identical run to run.
LOSSLESS_OPTIONS = {"crf": "0", "preset": "medium", "threads": "1"}


def write_lossless_mp4(frames: np.ndarray, path: Path, fps: int) -> None:
    """Write uint8 [T, H, W, 3] frames as a lossless H.264 (libx264rgb) mp4."""
    height, width = frames.shape[1:3]
    try:
        with av.open(str(path), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264rgb", rate=fps, options=LOSSLESS_OPTIONS)
            stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())  # flush delayed frames
    except av.FFmpegError as err:
        raise MediaError(f"{path}: cannot write mp4 ({err})") from None


def read_mp4_frames(path: Path) -> np.ndarray:
    """Decode every frame of an mp4 as uint8 [T, H, W, 3] (for checks; training uses vimi.data.video_io)."""
    try:
        with av.open(str(path)) as container:
            return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    except (av.FFmpegError, ValueError) as err:
        raise MediaError(f"{path}: cannot read video ({err})") from None


def write_png(image: np.ndarray, path: Path) -> None:
    """Write uint8 [H, W, 3] as PNG (deterministic bytes: no timestamps or metadata)."""
    Image.fromarray(image).save(path, format="PNG", compress_level=6)
