"""Paired comparison of two grounding evaluations of the same prompts (`vimi eval compare`).

Two checkpoints scored on the same world, split and prompts (two `vimi eval grounding` runs, side by side, or one
with `--baseline`) often differ by less than either one's own interval while the difference itself is certain:
pairing the videos by prompt cancels what the prompts share. Per task and metric this gives each side's mean and
the mean difference A - B with a paired percentile bootstrap interval.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vimi.errors import ConfigError, DataError
from vimi.eval.bootstrap import bootstrap_ci
from vimi.eval.grounding import psnr_gain
from vimi.utils.files import read_json

DEFAULT_NAME = "checkpoint"
"""The entry `vimi eval grounding` writes its --checkpoint's scores under (--baseline: `baseline`)."""


@dataclass(frozen=True)
class EvalResult:
    """One checkpoint's per-prompt scores from a metrics.json."""

    path: Path
    name: str
    world: str
    split: str
    records: list[dict]

    @property
    def label(self) -> str:
        return f"{self.path.parent.name}:{self.name}"


@dataclass(frozen=True)
class Comparison:
    """One (task, metric) over the prompts both results scored: means, and A - B with its interval."""

    task: str
    metric: str
    n: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float


def load_result(spec: str) -> EvalResult:
    """`FOLDER`, or `FOLDER/metrics.json`, with an optional `:NAME` suffix (default: `checkpoint`)."""
    path, sep, name = spec.rpartition(":")
    if not sep or "/" in name:
        path, name = spec, DEFAULT_NAME
    file = Path(path)
    if file.is_dir():
        file = file / "metrics.json"
    if not file.is_file():
        raise ConfigError(f"{spec}: no metrics.json there; give a `vimi eval grounding --out` folder")
    summary = read_json(file, "metrics.json of `vimi eval grounding`")
    names = [k for k, v in summary.items() if isinstance(v, dict) and "per_prompt" in v]
    if name not in names:
        raise ConfigError(f"{spec}: {file} holds no scores of {name!r}; it has {', '.join(names) or 'none'}")
    records = summary[name]["per_prompt"]
    if not all(isinstance(r, dict) and {"id", "task"} <= r.keys() for r in records):
        raise DataError(f"{file}: {name}'s per_prompt records need an id and a task each")
    return EvalResult(file, name, str(summary.get("world")), str(summary.get("split")), records)


def per_prompt_values(records: Sequence[dict]) -> dict[tuple[str, str], dict[str, float]]:
    """(task, metric) -> prompt id -> value; `psnr_gain` is derived where an older metrics.json lacks it."""
    values: dict[tuple[str, str], dict[str, float]] = {}
    for record in records:
        metrics = {k: v for k, v in record.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        older = "psnr_copy" in metrics and "psnr_gain" not in metrics
        # psnr_gain is None on a still clip: nothing to gain over an exact copy.
        if older and (gain := psnr_gain(metrics["psnr"], metrics["psnr_copy"])) is not None:
            metrics["psnr_gain"] = gain
        for metric, value in metrics.items():
            values.setdefault((record["task"], metric), {})[record["id"]] = float(value)
    return values


def compare_results(
    a: EvalResult, b: EvalResult, samples: int = 1000, seed: int = 0, level: float = 0.95
) -> list[Comparison]:
    """Every (task, metric) both results scored, over the prompts both hold; A - B with a paired interval."""
    if (a.world, a.split) != (b.world, b.split):
        raise ConfigError(
            f"{a.label} scored {a.split} of {a.world}, {b.label} {b.split} of {b.world}: "
            "a paired comparison needs the same world and split"
        )
    truth_a = {r["id"]: r.get("truth") for r in a.records}
    for record in b.records:
        if record["id"] in truth_a and truth_a[record["id"]] != record.get("truth"):
            raise DataError(
                f"prompt {record['id']}: {a.label} and {b.label} scored it against different truths"
            )
    values_a, values_b = per_prompt_values(a.records), per_prompt_values(b.records)
    rows = []
    for key in sorted(values_a.keys() & values_b.keys()):
        ids = sorted(values_a[key].keys() & values_b[key].keys())
        if not ids:
            continue
        x = np.array([values_a[key][i] for i in ids])  # [n]
        y = np.array([values_b[key][i] for i in ids])  # [n]
        diff = x - y
        low, high = bootstrap_ci(diff, samples, seed, level)  # the prompts resampled together: paired
        rows.append(
            Comparison(*key, len(ids), float(x.mean()), float(y.mean()), float(diff.mean()), low, high)
        )
    if not rows:
        raise ConfigError(
            f"{a.label} and {b.label} share no scored prompts (were they run with the same --task?)"
        )
    return rows


def format_comparison(rows: Sequence[Comparison], a: EvalResult, b: EvalResult) -> list[str]:
    """A header and one line per (task, metric); `*` marks a difference whose interval leaves out zero."""
    lines = [f"A = {a.label} ({a.path}), B = {b.label} ({b.path})"]
    for row in rows:
        certain = "*" if row.ci_low > 0 or row.ci_high < 0 else " "
        lines.append(
            f"{row.task:13s} {row.metric:14s} n={row.n:<4d} A {_number(row.mean_a)}  B {_number(row.mean_b)}  "
            f"A-B {_number(row.diff, True)} [{_number(row.ci_low, True)}, {_number(row.ci_high, True)}] {certain}"
        )
    return lines


def _number(value: float, signed: bool = False) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:+.3f}" if signed else f"{value:.3f}"
