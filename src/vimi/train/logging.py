"""Run logging on rank 0: progress bar (loss, steps/s, ETA), TensorBoard events, a JSONL of metrics, sample videos."""

import json
import logging
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from vimi.data.video_io import gif_bytes, write_gif, write_mp4
from vimi.utils.atomic import atomic_open

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


class RunLogger:
    """Writes metrics to out_dir/metrics.jsonl and out_dir/tensorboard, and drives the progress bar.

    On a resumed run the JSONL lines past the resumed step are dropped first, so the file is the
    history of exactly the weights that exist.
    """

    def __init__(self, out_dir: str | Path, start_step: int, total_steps: int, enabled: bool, progress: bool):
        self.enabled = enabled
        self.out_dir = Path(out_dir)
        self.writer = None
        self.bar = None
        self._last_time = time.perf_counter()
        self._last_step = start_step
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.out_dir / METRICS_FILE
        _truncate_after(self.metrics_path, start_step)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=start_step + 1)
        except ImportError as err:  # tensorboard is a dependency; still, never fail a run for a log
            log.warning("TensorBoard unavailable (%s); metrics go to %s only", err, self.metrics_path)
        if progress:
            self.bar = tqdm(total=total_steps, initial=start_step, desc="train", dynamic_ncols=True)

    def log_step(self, step: int, metrics: dict[str, float], write: bool) -> None:
        """Advance the bar to `step`; when `write`, also write `metrics` (plus steps/s) to JSONL and TensorBoard."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{metrics['loss']:.4f}", refresh=False)
        if not write:
            return
        now = time.perf_counter()
        steps_per_s = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_time, self._last_step = now, step
        record = {"step": step, **metrics, "steps_per_s": steps_per_s}
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "step":
                    self.writer.add_scalar(f"train/{key}", value, step)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{metrics['loss']:.4f}", it_s=f"{steps_per_s:.2f}")

    def log_videos(self, step: int, videos: dict[str, torch.Tensor], fps: int) -> list[Path]:
        """Write each video [C, T, H, W] in [-1, 1] as mp4 and gif under out_dir/samples, and to TensorBoard."""
        if not self.enabled:
            return []
        written = []
        folder = self.out_dir / "samples"
        for name, video in videos.items():
            stem = folder / f"step{step:08d}-{name}"
            written.append(write_mp4(video, stem.with_suffix(".mp4"), fps=fps))
            written.append(write_gif(video, stem.with_suffix(".gif"), fps=fps))
            if self.writer is not None:
                self._tensorboard_video(f"samples/{name}", video, step, fps)
        return written

    def _tensorboard_video(self, tag: str, video: torch.Tensor, step: int, fps: int) -> None:
        # What SummaryWriter.add_video writes, minus its moviepy dependency: a GIF in an image summary.
        self.writer.file_writer.add_summary(video_summary(tag, video, fps), step)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


def video_summary(tag: str, video: torch.Tensor, fps: int):
    """A TensorBoard video summary (the animated-GIF image summary that add_video writes) of [C, T, H, W]."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    _, _, height, width = video.shape
    image = Summary.Image(
        height=height, width=width, colorspace=3, encoded_image_string=gif_bytes(video, fps)
    )
    return Summary(value=[Summary.Value(tag=tag, image=image)])


def read_metrics(out_dir: str | Path) -> list[dict]:
    """The JSONL metrics of a run, one dict per logged step (lines torn by a kill are skipped)."""
    return [record for _, record in _read_records(Path(out_dir) / METRICS_FILE)]


def _truncate_after(path: Path, step: int) -> None:
    """Keep the JSONL lines up to `step`, dropping lines that do not parse (so a torn last line never blocks --resume)."""
    kept = [line for line, record in _read_records(path) if record["step"] <= step]
    if path.is_file():
        with atomic_open(path, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in kept))


def _read_records(path: Path) -> list[tuple[str, dict]]:
    """(line, record) for each metrics line; a line that is not a JSON object with a step is logged and skipped."""
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                raise ValueError("no integer step")
        except ValueError:  # json.JSONDecodeError is a ValueError
            log.warning(
                "%s line %d is not a metrics record (a torn write?); skipping it: %.80r", path, number, line
            )
            continue
        records.append((line, record))
    return records
