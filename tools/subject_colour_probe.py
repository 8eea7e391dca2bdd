"""Does a subject video show the prompted subject's colours, whatever its shape? Read from a grounding eval.

    python tools/subject_colour_probe.py outputs/eval-s14-main [outputs/eval-s14-text ...]

`vimi eval grounding` reads a subject only when a candidate sprite's fit explains the foreground, so a blob
of the right colours in the wrong shape scores like an empty scene. This probe reads colour alone: per
subject prompt of the eval folder, the mean colour of the generated video's foreground pixels (the pixels
the scorer's tracker separates from the matched scene) against the mean colour of each of the scorer's
candidate sprites (the prompted subject and the same distractors, fixed per prompt); the nearest candidate
is the colour's answer, and a video without foreground answers wrong. The same read on the ground-truth
videos gives the probe's ceiling (similar-coloured sprites confuse it), and a text-only baseline, which never
sees the images, its chance level. Prints accuracy with a bootstrap interval per folder, and for each
folder after the first, on the same prompts, the paired difference to the first.
"""

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from vimi.config import load_config
from vimi.data.video_io import probe_video, read_video
from vimi.data.world.loader import load_world
from vimi.eval.bench import split_scorer
from vimi.eval.bootstrap import bootstrap_ci
from vimi.eval.grounding import GroundingScorer, GroundTruth
from vimi.eval.tracking import to_frames


def sprite_colour(sprite: np.ndarray) -> np.ndarray:
    """Mean colour [3] of a premultiplied RGBA sprite [S, S, 4] over what it covers."""
    return sprite[..., :3].sum(axis=(0, 1)) / max(float(sprite[..., 3].sum()), 1e-6)


def colour_answer(scorer: GroundingScorer, frames: np.ndarray, candidates: list[int]) -> int | None:
    """The candidate whose mean sprite colour is nearest the frames' foreground colour; None without foreground."""
    tracker = scorer.tracker
    match = tracker.match_background(frames)
    mask = tracker.foreground(frames, match)  # [T, H, W]
    if mask.sum() < tracker.min_pixels:
        return None
    colour = frames[mask].mean(axis=0)  # [N, 3] -> [3]
    palette = np.stack([sprite_colour(scorer.renderer.sprite(c)) for c in candidates])  # [C, 3]
    return candidates[int(np.linalg.norm(palette - colour, axis=1).argmin())]


def colour_reads(folder: Path) -> dict[str, dict[str, dict[str, float]]]:
    """checkpoint name -> {"generated", "truth"} -> prompt id -> 1.0 if its colour answers the prompted subject."""
    summary = json.loads((folder / "metrics.json").read_text())
    cfg = replace(load_config(folder / "config.yaml").eval, split=summary["split"])
    world = load_world(summary["world"])
    scorer = split_scorer(world, cfg)
    size = (world.config.height, world.config.width)
    reads = {}
    for name, result in summary.items():
        if not (isinstance(result, dict) and "per_prompt" in result):
            continue
        reads[name] = {"generated": {}, "truth": {}}
        for row in (row for row in result["per_prompt"] if row["task"] == "subject"):
            asked = row["truth"]
            truth = GroundTruth(tuple(asked["subjects"]), tuple(asked["motions"]), asked["scene"])
            candidates = scorer.candidates(truth, row["id"])
            for kind, suffix in (("generated", "run0"), ("truth", "truth")):
                media = folder / "media" / f"{row['id']}-{suffix}.gif"
                if media.is_file():
                    video = read_video(media, probe_video(media).num_frames)  # [C, T, H, W]
                    answer = colour_answer(scorer, to_frames(video, *size), candidates)
                    reads[name][kind][row["id"]] = float(answer == truth.subjects[0])
        if not reads[name]["generated"]:
            raise SystemExit(
                f"{folder}: no subject videos in media/ (score the subject task with vimi eval grounding)"
            )
    return reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evals", nargs="+", help="folders written by `vimi eval grounding`")
    args = parser.parse_args()
    chance = 1 / load_config(Path(args.evals[0]) / "config.yaml").eval.grounding_candidates
    first = None
    for folder in args.evals:
        for name, kinds in colour_reads(Path(folder)).items():
            for kind, right in kinds.items():
                values = np.asarray(list(right.values()))
                low, high = bootstrap_ci(values)
                share = f"{values.mean():.1%} [{low:.1%}, {high:.1%}]"
                line = f"{folder} {name} {kind}: colour right {share} of {len(values)}"
                if kind == "generated":
                    if first is None:
                        first = (f"{folder} {name}", right)
                    elif right.keys() == first[1].keys():  # the same prompts: a paired difference
                        ids = sorted(right)
                        delta = np.asarray([right[i] - first[1][i] for i in ids])
                        low, high = bootstrap_ci(delta)
                        line += f"; vs {first[0]} {delta.mean():+.1%} [{low:+.1%}, {high:+.1%}]"
                print(line + f" (chance {chance:.1%})")


if __name__ == "__main__":
    main()
