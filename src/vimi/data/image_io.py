"""Image IO with Pillow: read to [C, H, W] in [-1, 1], save atomically, convert to and from uint8."""

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from vimi.errors import MediaError
from vimi.utils.atomic import atomic_path

MediaSource = str | Path | bytes | BinaryIO
"""A path, the raw bytes of a file (e.g. a WebDataset sample field) or an open binary file."""


def describe_source(source: MediaSource) -> str:
    """A name for error messages: the path, or what kind of in-memory source it was."""
    if isinstance(source, str | Path):
        return str(source)
    if isinstance(source, bytes | bytearray | memoryview):
        return f"<{len(source)} bytes in memory>"
    return str(getattr(source, "name", "<file object>"))


def open_source(source: MediaSource) -> str | BinaryIO:
    """What Pillow / PyAV can open; a missing path raises MediaError before any decoder sees it."""
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(bytes(source))
    if isinstance(source, str | Path):
        if not Path(source).is_file():
            raise MediaError(f"{source}: file not found")
        return str(source)
    if source.seekable():
        source.seek(0)  # readers open a source more than once (probe, then decode)
    return source


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[C, H, W] or [C, T, H, W] float in [-1, 1] -> uint8 [H, W, C] or [T, H, W, C] (clamped, rounded)."""
    if x.ndim not in (3, 4):
        raise ValueError(f"expected [C, H, W] or [C, T, H, W], got shape {tuple(x.shape)}")
    scaled = ((x.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    # [C, H, W] -> [H, W, C];  [C, T, H, W] -> [T, H, W, C]
    order = (1, 2, 0) if x.ndim == 3 else (1, 2, 3, 0)
    return np.ascontiguousarray(scaled.permute(*order).numpy())


def from_uint8(a: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [H, W, C] or [T, H, W, C] -> float32 [C, H, W] or [C, T, H, W] in [-1, 1]; inverse of to_uint8."""
    if not isinstance(a, torch.Tensor):
        a = np.asarray(a)
        # Arrays viewing a PIL image are read-only, which torch warns about; the copy is one uint8 frame.
        a = torch.from_numpy(a if a.flags.writeable else a.copy())
    t = a
    if t.ndim not in (3, 4):
        raise ValueError(f"expected [H, W, C] or [T, H, W, C], got shape {tuple(t.shape)}")
    # [H, W, C] -> [C, H, W];  [T, H, W, C] -> [C, T, H, W]
    order = (2, 0, 1) if t.ndim == 3 else (3, 0, 1, 2)
    return t.permute(*order).float().div(127.5).sub(1.0).contiguous()


def resize_center_crop(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale so the image covers (H, W), then crop the centre; one antialiased Pillow resample."""
    height, width = size
    scale = max(height / image.height, width / image.width)
    # The crop box is expressed in source pixels, so Pillow resizes only the kept region.
    box_w, box_h = width / scale, height / scale
    left, top = (image.width - box_w) / 2, (image.height - box_h) / 2
    return image.resize((width, height), Image.Resampling.BICUBIC, box=(left, top, left + box_w, top + box_h))


def flatten_to_rgb(image: Image.Image) -> Image.Image:
    """RGB; transparent pixels are composited on white so they do not turn black."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_pil_image(source: MediaSource) -> Image.Image:
    """Decode fully with Pillow, EXIF orientation applied, as RGB; any failure is a MediaError."""
    name = describe_source(source)
    try:
        with Image.open(open_source(source)) as image:
            image.load()  # Pillow decodes lazily: force it so a truncated file fails here.
            transposed = ImageOps.exif_transpose(image)
            return flatten_to_rgb(transposed)
    except MediaError:
        raise
    except UnidentifiedImageError:
        raise MediaError(f"{name}: not a readable image (corrupt or unsupported format)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise MediaError(f"{name}: cannot decode image ({err}); the file is truncated or corrupt") from None


def read_image(source: MediaSource, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Read an image as float32 [3, H, W] in [-1, 1]; `size=(H, W)` resizes and centre-crops."""
    image = load_pil_image(source)
    if size is not None:
        image = resize_center_crop(image, size)
    return from_uint8(np.asarray(image))


def save_image(image: torch.Tensor, path: str | Path) -> Path:
    """Save [3, H, W] in [-1, 1] atomically; the format follows the suffix (.png, .jpg, .webp, ...)."""
    path = Path(path)
    file_format = Image.registered_extensions().get(path.suffix.lower())
    if file_format is None:
        raise MediaError(f"{path}: unknown image suffix {path.suffix!r}; use .png or .jpg")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"save_image expects [3, H, W], got shape {tuple(image.shape)}")
    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(image)).save(tmp, format=file_format)
    return path
