"""benchmarks/learning.py --quick: a tiny arm trained from scratch on a tiny rung-1 world, scored along the way;
the curves are written, its loss falls, and a run killed between two points goes on to the same curve."""

import csv
import importlib.util
from pathlib import Path

import pytest
import torch
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "learning.py"


@pytest.fixture(scope="module")
def learning():
    spec = importlib.util.spec_from_file_location("learning_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_quick_run_writes_curves_whose_loss_falls_and_resumes_to_the_same_points(learning, tmp_path):
    threads = torch.get_num_threads()
    try:
        learning.main(["--quick", "--out", str(tmp_path)])
        rows = read(tmp_path / "curves.csv")
        assert [(r["arm"], int(r["step"]), int(r["samples"])) for r in rows] == [
            ("tiny", 15, 60),
            ("tiny", 30, 120),
        ]
        assert float(rows[1]["loss"]) < float(rows[0]["loss"]) and float(rows[1]["cpu_s"]) > float(
            rows[0]["cpu_s"]
        )
        for key in ("box_psnr", "predict_box_psnr", "denoise_vs_best_baseline@1"):
            assert all(0 < float(r[key]) < 100 for r in rows), key
        with Image.open(tmp_path / "curves.png") as png:
            assert png.width > 400 and png.height > 400
        # Killed while training to the second point: the rerun trains it again from the first point's checkpoint
        # (bit-exact on the CPU) and scores it the same.
        import shutil

        shutil.rmtree(tmp_path / "tiny" / "run" / "checkpoints" / "step-00000030")
        with (tmp_path / "curves.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerow(rows[0])
        learning.main(["--quick", "--out", str(tmp_path)])
        again = read(tmp_path / "curves.csv")
        assert (
            len(again) == 2
            and again[1]["box_psnr"] == rows[1]["box_psnr"]
            and again[1]["loss"] == rows[1]["loss"]
        )
    finally:
        torch.set_num_threads(threads)


def test_box_psnr_counts_only_the_boxes_and_the_blur_keeps_a_flat_video(learning):
    truth = torch.zeros(3, 2, 8, 8)
    boxes = torch.tensor([[[0, 0, 4, 4], [4, 4, 8, 8]]]).numpy()  # one subject, two frames
    mask = learning.box_mask(boxes, 8, 8)
    assert mask.sum() == 32 and mask[0, :4, :4].all() and mask[1, 4:, 4:].all()
    video = truth.clone()
    video[:, 0, 4:, 4:] = 1.0  # wrong only outside the boxes
    assert learning.masked_psnr(video, truth, mask) == pytest.approx(100.0)  # the clamped floor of the error
    assert learning.masked_psnr(video, truth) < 20
    flat = torch.full((1, 3, 2, 8, 8), 0.3)
    torch.testing.assert_close(learning.blur3(flat), flat)
