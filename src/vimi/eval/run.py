"""Evaluate one or more checkpoints on a GroundedWorld: generate, score, write metrics.json + report.html.

Shared by `vimi eval grounding` and `vimi demo`, so the demo's numbers are the benchmark's numbers.
"""

import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from vimi.config import EvalConfig
from vimi.data.video_io import write_gif, write_mp4
from vimi.data.world import GroundedWorld
from vimi.eval.bench import BenchResult, pipeline_generate_fn, run_benchmark
from vimi.eval.report import write_report
from vimi.utils.atomic import write_json_atomic

log = logging.getLogger(__name__)


def evaluate_checkpoints(
    checkpoints: dict[str, str | Path],
    world: GroundedWorld,
    tasks: Sequence[str],
    cfg: EvalConfig,
    out: str | Path,
    index: str | Path | None = None,
    sampling: dict | None = None,
    device: str | None = None,
    save_videos: bool = False,
) -> dict:
    """Score each checkpoint (name -> folder) on the same prompts; returns the metrics written to JSON.

    `sampling` (steps, sampler, guidance_text, guidance_image) overrides each checkpoint's own settings.
    """
    from vimi.pipeline import VimiPipeline

    out = Path(out)
    size = (world.config.num_frames, world.config.height, world.config.width)
    results: dict[str, BenchResult] = {}
    metrics: dict[str, dict] = {}
    for name, path in checkpoints.items():
        pipe = VimiPipeline.from_pretrained(path, device=device)
        generate = pipeline_generate_fn(pipe, *size, sampling)
        log.info("%s: generating and scoring %s", name, ", ".join(tasks))
        result = run_benchmark(world, generate, tasks, cfg, index=index)
        # Record the prompt the model saw: the pipeline retrieved the t2v examples itself (deterministically).
        for item in result.items:
            if item.use_index:
                item.prompt = pipe.prepare_prompt(item.prompt, None, index)
        results[f"{name}: {Path(path).name}"] = result
        metrics[name] = {"path": str(Path(path).resolve()), **result.summary}
        metrics[name]["per_prompt"] = [
            {
                "id": item.id,
                "task": item.task,
                "text": item.text,
                **score.metrics(),
                # What was asked beside what was read, so a miss can be told apart from a subject not drawn.
                "truth": asdict(item.truth),
                "predicted": score.predictions(),
            }
            for item, score in zip(result.items, result.scores)
        ]
        if save_videos:
            _save_videos(result, out / "videos" / name, world.config.fps)
    summary = {
        "world": str(world.root.resolve()),
        "split": cfg.split,
        "n": cfg.n,
        "tasks": list(tasks),
        "sampling": sampling or {},
        **metrics,
    }
    write_json_atomic(out / "metrics.json", summary)
    summary["report"] = str(write_report(out, results, fps=world.config.fps))
    return summary


def format_metrics(summary: dict, names: Sequence[str]) -> list[str]:
    """One line per (checkpoint, task): each metric's mean and 95% interval."""
    lines = []
    for name in names:
        for task, values in summary[name]["tasks"].items():
            text = ", ".join(
                f"{m} {v['mean']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]" for m, v in values.items()
            )
            lines.append(f"{name} {task}: {text}")
    return lines


def _save_videos(result: BenchResult, folder: Path, fps: int) -> None:
    for item, video in zip(result.items, result.videos):
        stem = item.id  # ids are unique across tasks ("subject-heldout-000003")
        write_mp4(video, folder / f"{stem}.mp4", fps=fps)
        write_gif(video, folder / f"{stem}.gif", fps=fps)
