"""A self-contained HTML report of a grounding benchmark: OUT/report.html + OUT/media/ (GIFs, PNGs).

One row per prompt: the task, the prompt text and images, each run's generated video (the checkpoint
and, side by side, a baseline), the ground truth, and per-metric bars for each run. Every piece of
text goes through html.escape; every media path is relative to the report.
"""

import html
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from vimi.data.image_io import save_image
from vimi.data.video_io import write_gif
from vimi.eval.bench import BenchResult
from vimi.utils.atomic import atomic_open

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
    rows = []
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
        write_gif(_truth_video(item.record.video, first.videos[row]), truth, fps=fps)
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
    return path


def _summary_table(results: dict[str, BenchResult]) -> str:
    """Mean [95% CI] of every metric per task and run."""
    lines = [
        "<h2>Summary (mean [95% bootstrap CI], n)</h2><table class='summary'><tr><th>run</th><th>task</th><th>metric</th><th>value</th></tr>"
    ]
    for name, result in results.items():
        for task, metrics in result.summary.get("tasks", {}).items():
            for metric, value in metrics.items():
                text = f"{value['mean']:.3f} [{value['ci_low']:.3f}, {value['ci_high']:.3f}], n={value['n']}"
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
