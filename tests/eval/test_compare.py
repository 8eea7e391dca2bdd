"""`vimi eval compare`: paired differences between two grounding evaluations, and its bad inputs."""

import json
from pathlib import Path

import numpy as np
import pytest

from vimi.cli import main
from vimi.errors import ConfigError, DataError
from vimi.eval.compare import compare_results, load_result

WORLD = "/data/world-eval"


def write_metrics(
    folder: Path, psnr: np.ndarray, psnr_copy: np.ndarray, subject: np.ndarray, **extra
) -> Path:
    """A metrics.json as `vimi eval grounding` writes it (older: without psnr_gain), 'checkpoint' only."""
    records = [
        {"id": f"predict-heldout-{i:06d}", "task": "predict", "text": "t", "psnr": float(p), "psnr_copy": float(c),
         "truth": {"subjects": [i % 5], "motions": ["left"], "scene": 0}, "predicted": {}}
        for i, (p, c) in enumerate(zip(psnr, psnr_copy))
    ] + [
        {"id": f"subject-heldout-{i:06d}", "task": "subject", "text": "t", "subject": float(s),
         "truth": {"subjects": [i % 5], "motions": ["left"], "scene": 1}, "predicted": {"subjects": []}}
        for i, s in enumerate(subject)
    ]  # fmt: skip
    summary = {
        "world": WORLD,
        "split": "heldout",
        "n": len(psnr),
        "checkpoint": {"per_prompt": records},
    } | extra
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(summary))
    return folder


def rows_by_key(rows):
    return {(r.task, r.metric): r for r in rows}


def test_pairing_finds_a_small_gain_that_the_prompts_hide(tmp_path):
    # Prompts differ by ~3 dB, the models by 0.3 dB on every one: each side's own interval is wider than the
    # gain, the paired one leaves zero far out. Four clips are still (copy = the 100 dB cap): no psnr_gain.
    rng = np.random.default_rng(0)
    copy = rng.normal(20.0, 3.0, 64)
    copy[:4] = 100.0
    b_psnr = copy + rng.normal(0.2, 0.05, 64)
    a_psnr = b_psnr + 0.3 + rng.normal(0.0, 0.05, 64)
    subject_a, subject_b = (rng.random(64) < 0.5).astype(float), (rng.random(64) < 0.5).astype(float)
    a = load_result(str(write_metrics(tmp_path / "a", a_psnr, copy, subject_a)))
    b = load_result(str(write_metrics(tmp_path / "b", b_psnr, copy, subject_b)) + ":checkpoint")
    rows = rows_by_key(compare_results(a, b, samples=2000))

    psnr = rows["predict", "psnr"]
    assert psnr.n == 64 and psnr.diff == pytest.approx(np.mean(a_psnr - b_psnr))
    assert 0.25 < psnr.ci_low < psnr.diff < psnr.ci_high < 0.35
    assert psnr.mean_a - psnr.mean_b == pytest.approx(psnr.diff)
    own_half_width = 1.96 * np.std(b_psnr) / np.sqrt(64)
    assert psnr.ci_high - psnr.ci_low < 0.1 * own_half_width  # what pairing buys
    gain = rows["predict", "psnr_gain"]  # derived from psnr and psnr_copy on the 60 moving clips
    assert gain.n == 60 and gain.mean_b == pytest.approx(np.mean((b_psnr - copy)[4:]))
    assert rows["predict", "psnr_copy"].diff == 0.0 == rows["predict", "psnr_copy"].ci_high
    # Two independent coin flips per prompt: no difference to find, and the interval says so.
    subject = rows["subject", "subject"]
    assert subject.ci_low < 0 < subject.ci_high and subject.diff == pytest.approx(
        subject_a.mean() - subject_b.mean()
    )


def test_cli_prints_each_metric_and_writes_json(tmp_path, capsys):
    copy = np.full(8, 20.0)
    a = write_metrics(tmp_path / "a", copy + 1.0, copy, np.ones(8))
    b = write_metrics(tmp_path / "b", copy + np.linspace(0, 0.1, 8), copy, np.zeros(8))
    out = tmp_path / "compare.json"
    assert (
        main(["eval", "compare", str(a / "metrics.json"), str(b), "--samples", "200", "--out", str(out)]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[0].startswith("A = a:checkpoint") and len(lines) == 1 + 4
    )  # psnr, psnr_copy, psnr_gain, subject
    assert any(line.startswith("subject") and "A-B +1.000 [+1.000, +1.000] *" in line for line in lines)
    written = json.loads(out.read_text())
    assert written["a"]["name"] == "checkpoint" and len(written["rows"]) == 4
    assert {r["metric"] for r in written["rows"]} == {"psnr", "psnr_copy", "psnr_gain", "subject"}


@pytest.mark.parametrize(
    ("b_spec", "error", "needle"),
    [
        ("b:baseline", ConfigError, "holds no scores of 'baseline'; it has checkpoint"),
        ("missing", ConfigError, "no metrics.json there"),
        ("other_world", ConfigError, "needs the same world and split"),
        ("corrupt", DataError, "corrupt metrics.json of `vimi eval grounding`"),
        ("a_list", DataError, "a JSON list, not an object"),
        ("other_truth", DataError, "against different truths"),
    ],
)
def test_bad_inputs_are_named(tmp_path, capsys, b_spec, error, needle):
    copy = np.full(4, 20.0)
    a = write_metrics(tmp_path / "a", copy, copy, np.ones(4))
    write_metrics(tmp_path / "b", copy, copy, np.ones(4))
    write_metrics(tmp_path / "other_world", copy, copy, np.ones(4), world="/data/another")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "metrics.json").write_text('{"world": ')
    (tmp_path / "a_list").mkdir()
    (tmp_path / "a_list" / "metrics.json").write_text("[1, 2]")
    shifted = json.loads((tmp_path / "b" / "metrics.json").read_text())
    shifted["checkpoint"]["per_prompt"][0]["truth"]["scene"] = 7
    (tmp_path / "other_truth").mkdir()
    (tmp_path / "other_truth" / "metrics.json").write_text(json.dumps(shifted))
    spec = str(tmp_path / b_spec)
    with pytest.raises(error, match=needle):
        compare_results(load_result(str(a)), load_result(spec))
    assert main(["eval", "compare", str(a), spec]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err
