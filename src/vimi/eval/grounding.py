"""Grounding metrics on GroundedWorld, computed from pixels with the world's exact ground truth.

Per video (see `GroundingScorer.score`):
  subject      N-way identification: every candidate sprite (the prompted subject + N-1 distractor
               subjects of the same split) is fitted to the foreground with the world's renderer (angle
               searched, scale and centre from the mask); the prompted subject must give the lowest error
               summed over frames AND explain the foreground (error <= (1 - min_explained) x background-only
               error) in at least half of the frames.
  subject_choice  the same fits as a forced choice (vimi.eval.choice): the candidate with the lowest summed
               error, whatever it explains; a video with no foreground gets a seeded random candidate.
               Chance (1/N) in expectation for a video that shows nothing of the prompt, where `subject` gives 0.
  motion       the winning subject's tracked centre, log-scale and rotation are classified into the world's
               13 motion classes by least-squares trajectory models (`classify_motion`); correct if equal
               to the caption's motion. Single-subject videos.
  motion_choice  single-subject videos whose caption motion is a translation: the world translation nearest to
               the displacement of the largest foreground part's centroid (no identity gate); a video with no
               coherent displacement gets a seeded random direction. Chance 1/8 (vimi.eval.choice).
  scene        nearest scene background (median per-pixel L1 over all pixels and frames, robust to the
               subject) among every variant of every scene, accepted if within max_scene_distance.
  consistency  fraction of frames whose own identification (valid fit) equals the video's identification.
  two_subject  two-subject videos: the candidate pair whose joint fit (both sprites painted together, see
               vimi.eval.pairs: explain the best single fit away, fit the second to the residual, polish
               both) has the lowest error must be exactly the prompted pair, explain the foreground
               (min_explained) and each remove MIN_SUBJECT_SHARE of the error in its own footprint, in at
               least half of the sampled frames. Order-free: shuffled frames keep it.
  psnr / ssim  video prediction: frames after the given ones against the true continuation.
  psnr_copy    the same PSNR for the last given frame held still: the floor a prediction must beat
               (a model that has not learned motion scores about this; a still video scores the cap).
  psnr_gain    psnr - psnr_copy on the clips whose subject moves (not on still ones, where the copy is
               exact): what a model has learned of motion beyond copying its given frame.
A video that shows nothing subject-like (noise, an empty scene) is scored wrong by the gated metrics, never
guessed; the forced-choice ones guess for it (seeded per video) and so score it at chance.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from vimi.config import EvalConfig
from vimi.data.world.motions import BOUNCE_HEIGHT, MOTIONS, SIZE_RATIO, SPIN_TURNS, TRAVEL
from vimi.data.world.render import WorldRenderer
from vimi.eval.choice import TRANSLATIONS, choose_direction, choose_subject
from vimi.eval.pairs import fit_pairs
from vimi.eval.tracking import SubjectTracker, TemplateFit, to_frames

ACCURACY_METRICS = (
    "subject", "subject_choice", "motion", "motion_choice", "scene", "consistency", "two_subject"
)  # fmt: skip
PREDICTION_METRICS = ("psnr", "psnr_copy", "psnr_gain", "ssim")
VALIDITY: dict[str, dict[str, float]] = {
    "subject": {
        "truth": 1.0,
        "noise": 0.0,
        "shuffled": 1.0,
        "wrong_subject": 0.0,
        "blob": 0.545,
        "chance": 1 / 8,
    },
    "subject_choice": {
        "truth": 1.0,
        "noise": 0.136,
        "shuffled": 1.0,
        "wrong_subject": 0.0,
        "blob": 0.591,
        "chance": 1 / 8,
    },
    "motion": {
        "truth": 1.0,
        "noise": 0.0,
        "shuffled_moving": 0.025,
        "wrong_subject": 0.932,
        "blob": 0.795,
        "chance": 1 / 13,
    },
    "motion_choice": {
        "truth": 1.0,
        "noise": 0.074,
        "shuffled": 0.111,
        "reversed": 0.0,
        "wrong_subject": 1.0,
        "blob": 1.0,
        "chance": 1 / 8,
    },
    "scene": {"truth": 1.0, "noise": 0.0, "shuffled": 1.0, "wrong_subject": 1.0, "chance": 1 / 8},
    "consistency": {"truth": 1.0, "noise": 0.0, "shuffled": 1.0, "wrong_subject": 0.972, "chance": 1 / 8},
    "two_subject": {"truth": 1.0, "noise": 0.0, "shuffled": 0.9, "wrong_subject": 0.0, "chance": 1 / 28},
}
"""Each accuracy metric's mean on 64 held-out world videos (44 single-subject, 27 of them translations, and
20 two-subject; 8 frames of 32x32, 8 held-out subjects) as measured by tests/eval/test_grounding.py, which
fails if these drift: ground truth, uniform noise, shuffled frames (motion: moving subjects only), frames
reversed, one subject swapped for another, the subject replaced by a disc of its area, place and mean colour
(blob), and chance. Noise's subject_choice is the share of those prompts whose subject is the sprite that
best matches noise (chance over prompts, the same pick in every noise video)."""
NULL_CHECKS = {
    "subject": ("noise", "wrong_subject"),
    "subject_choice": ("noise", "wrong_subject"),
    "motion": ("noise", "shuffled_moving"),
    "motion_choice": ("noise", "shuffled", "reversed"),
    "scene": ("noise",),
    "consistency": ("noise",),
    "two_subject": ("noise", "wrong_subject"),
}
"""The broken videos each metric must score at chance on (or below it: a wrong subject, or reversed frames,
are read as what they show). The others it is blind to by design: identity ignores frame order, scene
ignores subjects and order, motion ignores which subject moves, consistency (the same identity in every
frame) ignores which subject it is."""


def validated_metrics() -> list[str]:
    """Accuracy metrics whose measured validity passes: >= 0.98 on truth, <= chance + 0.05 on their nulls."""
    return [
        metric
        for metric, row in VALIDITY.items()
        if row["truth"] >= 0.98 and all(row[check] <= row["chance"] + 0.05 for check in NULL_CHECKS[metric])
    ]


PSNR_CAP = 100.0
"""PSNR of identical frames (infinite) is reported as this many dB."""

# Motion thresholds: half of the smallest change the world's slow speed makes, so slow motions are
# detected with a 2x margin and pixel noise of a still subject stays far below them.
MIN_TRAVEL = TRAVEL["slow"] / 2  # fraction of the frame side
MIN_LOG_SCALE = float(np.log(SIZE_RATIO["slow"])) / 2
MIN_HOP = BOUNCE_HEIGHT / 2
MIN_TURNS = SPIN_TURNS["slow"] / 2
STILL_SPREAD = 0.04
"""A still subject's centre varies by at most this fraction of the side (std); its log-scale by < MIN_LOG_SCALE."""
SPIN_GAIN = 0.7
"""A spin must lower the best constant-angle fitting error to this fraction or less."""
MIN_SUBJECT_SHARE = 0.1
"""Each subject of a two-subject fit must remove this fraction of the background-only error in its own footprint
(GT subjects: 0.5-0.9 in most frames; a second subject that is not there: <= 0.1 in most frames)."""
MAX_FOREGROUND = 0.6
"""Two-subject videos: a foreground over this fraction of the frame is no scene with subjects (noise); two
subjects of the world cover at most ~30%."""


@dataclass(frozen=True)
class GroundTruth:
    """What a video should show: renderer subject indices (1 or 2), their motion ids, the scene index."""

    subjects: tuple[int, ...]
    motions: tuple[str, ...]
    scene: int


@dataclass
class VideoScore:
    """Per-video results; a metric that does not apply to the video is None."""

    subject: float | None = None
    subject_choice: float | None = None
    motion: float | None = None
    motion_choice: float | None = None
    scene: float | None = None
    consistency: float | None = None
    two_subject: float | None = None
    psnr: float | None = None
    psnr_copy: float | None = None
    psnr_gain: float | None = None
    ssim: float | None = None
    predicted_subjects: list[int] | None = None
    predicted_motion: str | None = None
    predicted_scene: int | None = None
    chosen_subject: int | None = None
    chosen_direction: str | None = None

    def metrics(self) -> dict[str, float]:
        """The metric values that apply (name -> value)."""
        names = (*ACCURACY_METRICS, *PREDICTION_METRICS)
        return {k: v for k, v in asdict(self).items() if k in names and v is not None}

    def predictions(self) -> dict:
        """What the scorer read from the video (renderer indices): `subjects` ([] when none was drawn clearly
        enough), `motion`, `scene`, and the forced choices `subject_choice`, `motion_choice` (guesses
        included); those not read are left out."""
        read = {
            "subjects": self.predicted_subjects,
            "motion": self.predicted_motion,
            "scene": self.predicted_scene,
            "subject_choice": self.chosen_subject,
            "motion_choice": self.chosen_direction,
        }
        return {k: v for k, v in read.items() if v is not None}


class GroundingScorer:
    """Scores generated videos of a world's subjects and scenes against what their prompts asked for."""

    def __init__(self, renderer: WorldRenderer, cfg: EvalConfig, candidate_pool: Sequence[int]):
        self.renderer = renderer
        self.cfg = cfg
        self.pool = list(candidate_pool)
        self.tracker = SubjectTracker(renderer, cfg.grounding_angle_steps, cfg.grounding_fg_threshold)

    def chance(self) -> dict[str, float]:
        """Each accuracy metric's chance level for this scorer (uniform guessing)."""
        n = max(min(self.cfg.grounding_candidates, len(self.pool)), 2)
        return {
            "subject": 1 / n,
            "subject_choice": 1 / n,
            "motion": 1 / len(MOTIONS),
            "motion_choice": 1 / len(TRANSLATIONS),
            "scene": 1 / len(self.renderer.scenes),
            "consistency": 1 / n,
            "two_subject": 2 / (n * (n - 1)),
        }

    def candidates(self, truth: GroundTruth, key: str) -> list[int]:
        """The prompted subjects + distractors from the pool, up to grounding_candidates, fixed per `key`."""
        others = [s for s in self.pool if s not in truth.subjects]
        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
        wanted = max(self.cfg.grounding_candidates - len(truth.subjects), 0)
        picked = np.random.default_rng(seed).permutation(len(others))[:wanted]
        return sorted([*truth.subjects, *(others[i] for i in picked)])

    def score(
        self, video, truth: GroundTruth, key: str = "", reference=None, given_frames: int = 0
    ) -> VideoScore:
        """Score one video (tensor [C, T, H, W] in [-1, 1] or uint8 [T, H, W, 3]) against `truth`.

        With `reference` (the true video), PSNR/SSIM of frames after the first `given_frames` are added, and
        (given_frames > 0) the PSNR of holding the last given frame. Who the subjects are is decided from
        the frames after the given ones, which the model drew (the given ones come back as given); the
        motion from the whole video, whose start the given frames are.
        """
        tracker, cfg = self.tracker, self.cfg
        frames = to_frames(video, self.renderer.height, self.renderer.width)
        out = VideoScore()
        match = tracker.match_background(frames)
        scene_ok = match.distance <= cfg.grounding_max_scene_distance
        out.predicted_scene = match.scene if scene_ok else None
        out.scene = float(scene_ok and match.scene == truth.scene)

        candidates = self.candidates(truth, key)
        mask = tracker.foreground(frames, match)
        if len(truth.subjects) == 1:
            present = mask.sum(axis=(1, 2)) >= tracker.min_pixels
            sample = _spread(drawn(present, given_frames), cfg.grounding_frames)
            target = mask[None, sample]  # [1, t, H, W]: the whole foreground is the subject's region
            fit = tracker.fit(frames[sample], match, target, candidates)[0] if len(sample) else None
            winner, valid, per_frame = self._identify(fit, candidates)
            out.predicted_subjects = [winner] if valid else []
            out.subject = float(valid and winner == truth.subjects[0])
            out.chosen_subject = choose_subject(fit, candidates, key)
            out.subject_choice = float(out.chosen_subject == truth.subjects[0])
            # Frames without a subject count against consistency: a subject that vanishes is not consistent.
            out.consistency = float(np.sum(per_frame == winner) / len(sample)) if valid else 0.0
            if valid and present.mean() >= cfg.grounding_min_frames:
                fit = tracker.fit(frames, match, mask[None], [winner])[0]
                out.predicted_motion = self._motion(fit, 0, winner)
            out.motion = float(out.predicted_motion == truth.motions[0])
            if truth.motions[0] in TRANSLATIONS:
                centroids, seen = tracker.largest_part_track(mask)
                out.chosen_direction = choose_direction(centroids / self.renderer.side, seen, key)
                out.motion_choice = float(out.chosen_direction == truth.motions[0])
        else:
            present = mask.sum(axis=(1, 2)) >= 2 * tracker.min_pixels
            sample = _spread(drawn(present, given_frames), cfg.grounding_frames)
            pair, valid = self._identify_pair(frames[sample], match, mask[sample], candidates)
            out.predicted_subjects = sorted(pair) if valid else []
            out.two_subject = float(valid and sorted(pair) == sorted(truth.subjects))
        if reference is not None:
            truth_frames = to_frames(reference, *frames.shape[1:3])
            out.psnr, out.ssim = prediction_scores(frames, truth_frames, given_frames)
            if given_frames > 0:
                held = truth_frames.copy()
                held[given_frames:] = truth_frames[given_frames - 1]
                out.psnr_copy = prediction_scores(held, truth_frames, given_frames)[0]
                out.psnr_gain = psnr_gain(out.psnr, out.psnr_copy)
        return out

    def _identify(self, fit: TemplateFit | None, candidates: list[int]) -> tuple[int, bool, np.ndarray]:
        """(winner, whether its fit explains the foreground in enough frames, per-frame winners (-1 invalid))
        of one target's fit (None: no frames)."""
        if fit is None:
            return candidates[0], False, np.zeros(0, np.int64)
        best = fit.best  # [C, t]: best pose per candidate and frame
        explained = 1 - best / np.maximum(fit.baseline, 1e-6)[None]  # [C, t]
        good = fit.present[None] & (explained >= self.cfg.grounding_min_explained)
        winner = int(best[:, fit.present].sum(axis=1).argmin()) if fit.present.any() else 0
        frame_winner = best.argmin(axis=0)
        per_frame = np.where(
            good[frame_winner, np.arange(best.shape[1])], np.asarray(candidates)[frame_winner], -1
        )
        valid = bool(good[winner].mean() >= self.cfg.grounding_min_frames)
        return candidates[winner], valid, per_frame

    def _identify_pair(self, frames: np.ndarray, match, mask: np.ndarray, candidates: list[int]):
        """(best pair of renderer indices, whether it explains the foreground with both subjects in enough frames)."""
        # Two subjects never cover most of a frame: a foreground that does is not a scene with subjects (noise).
        if len(frames) == 0 or mask.mean() > MAX_FOREGROUND:
            return (candidates[0], candidates[1]), False
        fit = fit_pairs(self.tracker, frames, match, mask, candidates)
        baseline = np.maximum(fit.baseline, 1e-6)[None]  # [1, T]
        explained = 1 - fit.errors / baseline  # [P, T]
        # What each subject adds: the error without it minus the joint error (alone[:, 0] lacks the second).
        shares = (fit.alone[:, ::-1] - fit.errors[:, None]) / np.maximum(fit.own_baseline, 1e-6)  # [P, 2, T]
        good = (explained >= self.cfg.grounding_min_explained) & (shares.min(axis=1) >= MIN_SUBJECT_SHARE)
        winner = int(fit.errors.sum(axis=1).argmin())
        return fit.pairs[winner], bool(good[winner].mean() >= self.cfg.grounding_min_frames)

    def _motion(self, fit: TemplateFit, column: int, subject: int) -> str | None:
        """Classify the tracked trajectory of candidate `column` (renderer index `subject`); None if too few frames."""
        keep = fit.present
        if keep.sum() < max(3, len(keep) // 2):
            return None
        errors = fit.errors[column]  # [A, T]
        progress = np.linspace(0, 1, errors.shape[1])
        turns, start, gain, cost = fit_rotation(errors, keep)
        explains = cost <= (1 - self.cfg.grounding_min_explained) * fit.baseline[keep].sum()
        if (
            gain > SPIN_GAIN or not explains
        ):  # no rotation explains the frames clearly better than a fixed angle
            turns, start = 0.0, float(errors[:, keep].sum(axis=1).argmin()) / len(self.tracker.angles)
        angles = (start + turns * progress) * 2 * np.pi
        centres, scales = self.tracker.centre_track(fit, subject, angles)
        side = self.renderer.side
        return classify_motion(progress[keep], centres[keep] / side, np.log(scales[keep]), turns)


def _spread(indices: np.ndarray, count: int) -> np.ndarray:
    """Up to `count` evenly spaced entries of `indices`."""
    if len(indices) <= count:
        return indices
    return indices[np.linspace(0, len(indices) - 1, count).round().astype(np.int64)]


def fit_rotation(
    errors: np.ndarray, present: np.ndarray, max_turns: float = 1.0
) -> tuple[float, float, float, float]:
    """Best constant-rate rotation through per-frame angle errors [A, T]: (total turns, start turn, gain, error).

    Tries every start angle and every whole-clip rotation that moves a whole number of angle steps
    per clip; gain = best rotating error / best fixed-angle error (< 1: rotation explains the frames better).
    """
    steps, frames = errors.shape
    progress = np.linspace(0, 1, frames)
    rates = np.arange(-int(max_turns * steps), int(max_turns * steps) + 1)  # angle steps per clip
    shifts = np.rint(rates[:, None] * progress[None, :]).astype(np.int64)  # [R, T]
    index = (np.arange(steps)[:, None, None] + shifts[None]) % steps  # [A, R, T]
    cost = (errors[index, np.arange(frames)[None, None, :]] * present[None, None, :]).sum(axis=-1)  # [A, R]
    start, rate = np.unravel_index(int(cost.argmin()), cost.shape)
    fixed = cost[:, rates == 0].min()
    gain = float(cost[start, rate] / max(fixed, 1e-9))
    return float(rates[rate] / steps), float(start / steps), gain, float(cost[start, rate])


def classify_motion(
    progress: np.ndarray, centres: np.ndarray, log_scales: np.ndarray, turns: float
) -> str | None:
    """The world motion class of a trajectory, or None when no class model fits it.

    progress [T] in [0, 1]; centres [T, 2] in frame sides; log_scales [T]; turns: fitted total rotation.
    Each class is a least-squares model of the signals over progress (translation: linear centre; bounce:
    |sin| hops; grow/shrink: linear log-scale; spin: constant-rate rotation) that must reach half the
    world's slow-speed magnitude and explain >= 80% of the signal's variance; shuffled frames fit none.
    """
    if abs(turns) >= MIN_TURNS:
        return "spin"
    slope, fit = _linear_fit(progress, log_scales)
    if abs(slope) >= MIN_LOG_SCALE and fit >= 0.8:
        return "grow" if slope > 0 else "shrink"
    x, y = centres[:, 0], centres[:, 1]
    slope_x, _ = _linear_fit(progress, x)
    for hops in (1, 2):
        basis = np.stack([np.ones_like(progress), progress, -np.abs(np.sin(np.pi * hops * progress))], axis=1)
        coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
        explained = 1 - np.sum((basis @ coef - y) ** 2) / max(np.sum((y - y.mean()) ** 2), 1e-12)
        if coef[2] >= MIN_HOP and explained >= 0.8 and abs(coef[1]) < coef[2] and abs(slope_x) < MIN_TRAVEL:
            return "bounce"
    slope_y, _ = _linear_fit(progress, y)
    residual = _residual(progress, x) + _residual(progress, y)
    total = np.sum((x - x.mean()) ** 2) + np.sum((y - y.mean()) ** 2)
    if np.hypot(slope_x, slope_y) >= MIN_TRAVEL and 1 - residual / max(total, 1e-12) >= 0.8:
        direction = np.array([slope_x, slope_y]) / np.hypot(slope_x, slope_y)
        return max(TRANSLATIONS, key=lambda m: float(TRANSLATIONS[m] @ direction))
    spread = np.sqrt(x.var() + y.var())
    if spread <= STILL_SPREAD and np.ptp(log_scales) <= MIN_LOG_SCALE:
        return "still"
    return None


def _linear_fit(progress: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """(slope over the whole clip, fraction of variance explained) of a least-squares line."""
    slope, intercept = np.polyfit(progress, values, 1)
    total = np.sum((values - values.mean()) ** 2)
    residual = np.sum((values - (slope * progress + intercept)) ** 2)
    return float(slope), float(1 - residual / total) if total > 1e-12 else 0.0


def _residual(progress: np.ndarray, values: np.ndarray) -> float:
    slope, intercept = np.polyfit(progress, values, 1)
    return float(np.sum((values - (slope * progress + intercept)) ** 2))


def drawn(present: np.ndarray, given_frames: int) -> np.ndarray:
    """Indices of the frames with a subject present [T] -> [n], leaving out the first `given_frames`."""
    indices = np.flatnonzero(present)
    return indices[indices >= given_frames]


def psnr_gain(psnr: float, psnr_copy: float) -> float | None:
    """A prediction's PSNR above the copy's, or None for a still clip (its copy is exact: the cap)."""
    return psnr - psnr_copy if psnr_copy < PSNR_CAP else None


def prediction_scores(frames: np.ndarray, reference: np.ndarray, given_frames: int) -> tuple[float, float]:
    """(PSNR in dB, SSIM) of the frames after the first `given_frames`, both [T, H, W, 3] in [0, 1]."""
    from skimage.metrics import structural_similarity

    count = min(len(frames), len(reference))
    fake, real = frames[given_frames:count], reference[given_frames:count]
    if len(fake) == 0:
        raise ValueError(f"no frames to score after {given_frames} given frame(s) of {count}")
    mse = float(np.mean((fake.astype(np.float64) - real) ** 2))
    psnr = min(PSNR_CAP, 10 * np.log10(1 / mse)) if mse > 0 else PSNR_CAP
    # Wang et al. (2004) settings: 11x11 Gaussian window, sigma 1.5, population statistics.
    ssim = np.mean([
        structural_similarity(f, r, channel_axis=-1, data_range=1.0, gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False)
        for f, r in zip(fake, real)
    ])  # fmt: skip
    return float(psnr), float(ssim)
