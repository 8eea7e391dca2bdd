"""A self-contained HTML report of a grounding benchmark: OUT/report.html + OUT/media/ (GIFs, PNGs).

One row per prompt: the task, the prompt text and images, each run's generated video (the checkpoint
and, side by side, a baseline), the ground truth, and per-metric bars for each run. Every piece of
text goes through html.escape; every media path is relative to the report. OUT/strip.gif shows one
prompt at a glance (`write_strip_gif`): its text, its images, the generated video and the ground truth.
"""

import html
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from vimi.data.image_io import save_image, to_uint8
from vimi.data.video_io import encode_gif, write_gif
from vimi.eval.bench import BenchResult
from vimi.utils.atomic import atomic_open, atomic_path

MEDIA = "media"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; }
td, th { border-bottom: 1px solid #ddd; padding: 6px 10px; vertical-align: top; text-align: left; }
img.media { width: 128px; height: 128px; image-rendering: pixelated; border: 1px solid #ccc; }
img.prompt { width: 64px; height: 64px; image-rendering: pixelated; border: 1px solid #ccc; margin: 2px; }
.bar { background: #eee; width: 120px; height: 10px; display: inline-block; vertical-align: middle; }
.fill { background: #3b7dd8; height: 10px; }
.metric { font-size: 12px; white-space: nowrap; }
.summary td { font-size: 13px; }
"""


def write_report(
    out_dir: str | Path,
    results: dict[str, BenchResult],
    title: str = "vimi grounding benchmark",
    fps: int = 8,
) -> Path:
    """Write OUT/report.html for one or more runs of the same items (name -> result); returns its path."""
    out_dir = Path(out_dir)
    media = out_dir / MEDIA
    media.mkdir(parents=True, exist_ok=True)
    names = list(results)
    first = results[names[0]]
    for name in names[1:]:
        if [i.id for i in results[name].items] != [i.id for i in first.items]:
            raise ValueError(
                f"run {name!r} scored other prompts than run {names[0]!r}; reports compare the same items"
            )
    rows, truths = [], []
    for row, item in enumerate(first.items):
        stem = _slug(item.id)
        images = _prompt_images(item.model_prompt.images, media, stem)  # prediction: its first frame too
        cells = [
            f"<td>{html.escape(item.task)}<br><small>{html.escape(item.id)}</small></td>",
            f"<td>{html.escape(item.text)}<br>{''.join(_img(p, 'prompt', 'prompt image') for p in images)}</td>",
        ]
        for run, name in enumerate(names):
            gif = media / f"{stem}-run{run}.gif"
            write_gif(results[name].videos[row], gif, fps=fps)
            cells.append(f"<td>{_img(gif.relative_to(out_dir).as_posix(), 'media', name)}</td>")
        truth = media / f"{stem}-truth.gif"
        truths.append(_truth_video(item.record.video, first.videos[row]))
        write_gif(truths[-1], truth, fps=fps)
        cells.append(f"<td>{_img(truth.relative_to(out_dir).as_posix(), 'media', 'ground truth')}</td>")
        for name in names:
            cells.append(f"<td>{_bars(results[name].scores[row].metrics())}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    header = (
        ["task", "prompt"]
        + [f"generated: {n}" for n in names]
        + ["ground truth"]
        + [f"metrics: {n}" for n in names]
    )
    body = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _summary_table(results),
        "<h2>Prompts</h2><table>",
        "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>",
        *rows,
        "</table></body></html>",
    ]
    path = out_dir / "report.html"
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(body) + "\n")
    # The strip shows a subject prompt where there is one: the task whose images matter most.
    row = next((i for i, item in enumerate(first.items) if item.task == "subject"), 0)
    item, video, truth = first.items[row], first.videos[row], truths[row]
    truth = truth if truth.shape == video.shape else None  # a truth clip shorter than the video is left out
    write_strip_gif(
        out_dir / "strip.gif",
        video,
        [image.load() for image in item.model_prompt.images],
        truth=truth,
        text=item.text,
        fps=fps,
    )
    return path


STRIP_MARGIN = 8  # pixels around the strip and between its panels
STRIP_LABEL = 18  # height of the label band under the panels


def write_strip_gif(
    path: str | Path,
    video: torch.Tensor,
    images: Sequence[torch.Tensor] = (),
    truth: torch.Tensor | None = None,
    text: str = "",
    scale: int = 4,
    fps: int = 8,
) -> Path:
    """One looping GIF of a prompt and its result, for a README or a slide.

    Left to right: the prompt's images [C, H, W] (held still), the generated video [C, T, H, W] and the
    ground truth [C, T, H, W] (optional), all in [-1, 1], each enlarged `scale` times with nearest
    neighbours so that pixels stay pixels; the prompt's text wrapped above, a label under each panel.
    Frame t of the GIF shows frame t of both videos. Written atomically; returns the path.
    """
    _check_video(video, "video")
    _, frames, height, width = video.shape  # [C, T, H, W]
    if truth is not None:
        _check_video(truth, "truth")
        if truth.shape != video.shape:
            raise ValueError(
                f"truth has shape {tuple(truth.shape)} and the video {tuple(video.shape)}: they must match"
            )
    stills = [_fit(image, height, width) for image in images]  # each [3, H, W]
    labels = ["prompt image" if len(stills) == 1 else f"image {i + 1}" for i in range(len(stills))]
    labels += ["generated"] + (["ground truth"] if truth is not None else [])
    panel_h, panel_w = height * scale, width * scale
    strip_w = STRIP_MARGIN + len(labels) * (panel_w + STRIP_MARGIN)
    font = _font()
    lines = _wrap(text, font, strip_w - 2 * STRIP_MARGIN) if text else []
    line_h = round(font.size * 1.35) if isinstance(font, ImageFont.FreeTypeFont) else 12
    top = STRIP_MARGIN + len(lines) * line_h + (STRIP_MARGIN if lines else 0)
    strip_h = top + panel_h + STRIP_LABEL + STRIP_MARGIN

    template = Image.new("RGB", (strip_w, strip_h), "white")
    draw = ImageDraw.Draw(template)
    for i, line in enumerate(lines):
        draw.text((STRIP_MARGIN, STRIP_MARGIN + i * line_h), line, fill=(34, 34, 34), font=font)
    lefts = [STRIP_MARGIN + i * (panel_w + STRIP_MARGIN) for i in range(len(labels))]
    for left, label in zip(lefts, labels):
        draw.text((left, top + panel_h + 3), label, fill=(90, 90, 90), font=font)
    canvas = np.asarray(template).copy()  # [strip_h, strip_w, 3]
    for left, still in zip(lefts, stills):
        canvas[top : top + panel_h, left : left + panel_w] = _enlarge(to_uint8(still), scale)
    videos = [to_uint8(video)] + ([to_uint8(truth)] if truth is not None else [])  # each [T, H, W, 3]
    pictures = []
    for t in range(frames):
        frame = canvas.copy()
        for left, clip in zip(lefts[len(stills) :], videos):
            frame[top : top + panel_h, left : left + panel_w] = _enlarge(clip[t], scale)
        pictures.append(Image.fromarray(frame))
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(encode_gif(pictures, fps))
    return path


def _check_video(video: torch.Tensor, name: str) -> None:
    if video.ndim != 4 or video.shape[0] != 3 or video.shape[1] < 1:
        raise ValueError(f"{name}: expected a video [3, T, H, W] with T >= 1, got shape {tuple(video.shape)}")


def _fit(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A prompt image [C, H', W'] at the video's size [3, H, W] (area-averaged when it shrinks)."""
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"a prompt image is [C, H, W] with C = 1 or 3, got shape {tuple(image.shape)}")
    image = image.float().expand(3, -1, -1)
    if image.shape[1:] != (height, width):
        image = F.interpolate(image[None], size=(height, width), mode="area")[0]
    return image


def _enlarge(frame: np.ndarray, scale: int) -> np.ndarray:
    """[H, W, 3] -> [H * scale, W * scale, 3], each pixel a scale x scale block."""
    return frame.repeat(scale, axis=0).repeat(scale, axis=1)


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at 12 px (its bitmap font where Pillow was built without FreeType)."""
    try:
        return ImageFont.load_default(size=12)
    except (ImportError, OSError):
        return ImageFont.load_default()


def _wrap(text: str, font, width: int) -> list[str]:
    """Greedy word wrap of `text` to lines no wider than `width` pixels in `font`."""
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and font.getlength(candidate) <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines


def _summary_table(results: dict[str, BenchResult]) -> str:
    """Mean [95% CI] of every metric per task and run, with its chance level (a forced choice never scores
    below it for a video that shows nothing, so its value reads against chance, not 0)."""
    lines = [
        "<h2>Summary (mean [95% bootstrap CI], n)</h2><table class='summary'><tr><th>run</th><th>task</th><th>metric</th><th>value</th></tr>"
    ]
    for name, result in results.items():
        chance = result.summary.get("chance", {})
        for task, metrics in result.summary.get("tasks", {}).items():
            for metric, value in metrics.items():
                text = f"{value['mean']:.3f} [{value['ci_low']:.3f}, {value['ci_high']:.3f}], n={value['n']}"
                text += f", chance {chance[metric]:.3f}" if metric in chance else ""
                text += " (not validated)" if value.get("valid") is False else ""
                lines.append(
                    f"<tr><td>{html.escape(name)}</td><td>{html.escape(task)}</td><td>{html.escape(metric)}</td><td>{html.escape(text)}</td></tr>"
                )
    lines.append("</table>")
    return "\n".join(lines)


def _bars(metrics: dict[str, float]) -> str:
    """One labelled bar per metric: accuracies on [0, 1], PSNRs on [0, 50] dB, SSIM on [0, 1]."""
    parts = []
    for name, value in metrics.items():
        decibels = name.startswith("psnr")
        full = 50.0 if decibels else 1.0
        width = max(0.0, min(1.0, value / full)) * 100
        label = f"{value:.1f} dB" if decibels else f"{value:.2f}"
        parts.append(
            f"<div class='metric'>{html.escape(name)} <span class='bar'><div class='fill' style='width:{width:.0f}%'></div></span> {html.escape(label)}</div>"
        )
    return "".join(parts) or "<div class='metric'>-</div>"


def _prompt_images(images: Sequence, media: Path, stem: str) -> list[str]:
    """Copy (paths) or save (tensors) the prompt's images into media/; their report-relative paths."""
    out = []
    for i, image in enumerate(images):
        target = media / f"{stem}-prompt{i}.png"
        if image.path is not None and Path(image.path).is_file():
            shutil.copyfile(image.path, target)
        else:
            save_image(image.load(), target)
        out.append(f"{MEDIA}/{target.name}")
    return out


def _truth_video(path: Path, like: torch.Tensor) -> torch.Tensor:
    """The ground-truth clip [C, T, H, W] in [-1, 1] at the generated video's frame count."""
    from vimi.data.video_io import probe_video, read_video

    frames = min(probe_video(path).num_frames, like.shape[1])
    return read_video(path, frames)


def _img(src: str, css: str, alt: str) -> str:
    return f"<img class='{css}' src='{html.escape(src, quote=True)}' alt='{html.escape(alt, quote=True)}'>"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)
