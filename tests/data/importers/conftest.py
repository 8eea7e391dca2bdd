"""Media for the importers' hidden cases, cut from a real clip and real photos."""

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

from vimi.data.video_io import read_video, write_mp4


@pytest.fixture(scope="session")
def clip_files(tmp_path_factory: pytest.TempPathFactory, real_clip: Path) -> dict[str, Path]:
    """good (12 frames), short (3 frames), truncated (a download cut in half) and garbage (no video) mp4 files."""
    folder = tmp_path_factory.mktemp("clip_files")
    video = read_video(real_clip, 12, size=(32, 32))
    good = write_mp4(video, folder / "good.mp4")
    short = write_mp4(video[:, :3], folder / "short.mp4")
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = folder / "garbage.mp4"
    garbage.write_bytes(b"this is no video " * 64)
    return {"good": good, "short": short, "truncated": truncated, "garbage": garbage}


def place(source: Path | None, target: Path) -> None:
    """Copy a media file to where a table row says it is (None: leave it missing)."""
    if source is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def jpeg_bytes(path: Path, side: int = 48) -> bytes:
    """A small JPEG of a real photo."""
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").resize((side, side)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by relative path: two folders are equal when these are."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
