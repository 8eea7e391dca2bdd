"""Motions (left, right, up, down, diagonals, bounce, spin, grow, shrink, still) at two speeds, and
their exact per-frame poses: centre (pixels), scale (sprite diameter / min(H, W)) and angle (radians,
counter-clockwise on screen). A motion's whole change happens over the clip, whatever its length."""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Motion:
    id: str
    phrase: str
    """Caption words, e.g. "moves left"; the speed adverb follows."""
    kind: str
    """translate | bounce | spin | grow | shrink | still"""
    direction: tuple[float, float] = (0.0, 0.0)
    """Screen direction (x right, y down) of a translation."""


MOTIONS: tuple[Motion, ...] = (
    Motion("left", "moves left", "translate", (-1.0, 0.0)),
    Motion("right", "moves right", "translate", (1.0, 0.0)),
    Motion("up", "moves up", "translate", (0.0, -1.0)),
    Motion("down", "moves down", "translate", (0.0, 1.0)),
    Motion("up_left", "moves up and to the left", "translate", (-0.75, -0.75)),
    Motion("up_right", "moves up and to the right", "translate", (0.75, -0.75)),
    Motion("down_left", "moves down and to the left", "translate", (-0.75, 0.75)),
    Motion("down_right", "moves down and to the right", "translate", (0.75, 0.75)),
    Motion("bounce", "bounces", "bounce"),
    Motion("spin", "spins", "spin"),
    Motion("grow", "grows", "grow"),
    Motion("shrink", "shrinks", "shrink"),
    Motion("still", "stays still", "still"),
)
MOTION_IDS = tuple(m.id for m in MOTIONS)

SPEEDS = ("slow", "fast")
SPEED_ADVERBS = {"slow": "slowly", "fast": "quickly"}
# Per speed: translation distance (fraction of the frame side), bounces, spin turns, size ratio.
TRAVEL = {"slow": 0.22, "fast": 0.45}
BOUNCES = {"slow": 1.0, "fast": 2.0}
BOUNCE_HEIGHT = 0.3
SPIN_TURNS = {"slow": 0.25, "fast": 0.5}  # at most 1/16 turn per frame at 8 frames: never aliased
SIZE_RATIO = {"slow": 1.4, "fast": 1.9}


def motion_phrase(motion_id: str, speed: str) -> str:
    """Caption words for a motion at a speed: "moves left slowly", "spins quickly", "stays still"."""
    motion = MOTIONS[MOTION_IDS.index(motion_id)]
    return motion.phrase if motion.kind == "still" else f"{motion.phrase} {SPEED_ADVERBS[speed]}"


def sample_poses(
    motion_index: np.ndarray,
    speed_index: np.ndarray,
    base_scale: np.ndarray,
    num_frames: int,
    height: int,
    width: int,
    rng: np.random.Generator,
    lane: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Poses of M moving subjects: {"cx", "cy", "scale", "angle"} each float32 [M, T].

    `lane` (-1 left, 0 anywhere, 1 right) picks where in its feasible range a subject starts, which
    keeps the two subjects of a video apart. Subjects stay fully inside the frame when they fit.
    """
    count = len(motion_index)
    progress = np.linspace(0.0, 1.0, num_frames)[None, :]  # [1, T]
    kinds = np.array([MOTIONS[i].kind for i in motion_index])
    fast = np.asarray(speed_index) == 1
    direction = np.array([MOTIONS[i].direction for i in motion_index]).reshape(count, 2)
    side = min(height, width)

    ratio = np.where(fast, SIZE_RATIO["fast"], SIZE_RATIO["slow"])[:, None]
    scale = np.repeat(base_scale[:, None], num_frames, axis=1)
    small = base_scale[:, None] / np.sqrt(ratio)
    scale = np.where((kinds == "grow")[:, None], small * ratio**progress, scale)
    scale = np.where((kinds == "shrink")[:, None], small * ratio ** (1 - progress), scale)

    turns = np.where(fast, SPIN_TURNS["fast"], SPIN_TURNS["slow"]) * rng.choice([-1.0, 1.0], count)
    angle = np.where((kinds == "spin")[:, None], 2 * np.pi * turns[:, None] * progress, 0.0)

    travel = np.where(fast, TRAVEL["fast"], TRAVEL["slow"])
    is_translation = kinds == "translate"
    shift_x = np.where(is_translation, direction[:, 0] * travel * width, 0.0)  # [M] total displacement
    shift_y = np.where(is_translation, direction[:, 1] * travel * height, 0.0)
    bounce = (kinds == "bounce")[:, None]
    bounces = np.where(fast, BOUNCES["fast"], BOUNCES["slow"])[:, None]
    hop = BOUNCE_HEIGHT * height * np.abs(np.sin(np.pi * bounces * progress))  # [M, T]

    radius = scale.max(axis=1) * side / 2
    lane = np.zeros(count, dtype=np.int64) if lane is None else np.asarray(lane)
    low = np.where(lane > 0, 0.55, 0.0)
    high = np.where(lane < 0, 0.45, 1.0)
    start_x = _start(radius, shift_x, width, rng.uniform(low, high))
    top_room = np.where(bounce[:, 0], BOUNCE_HEIGHT * height, 0.0)
    start_y = _start(radius, shift_y, height, rng.uniform(0, 1, count), extra_top=top_room)

    cx = start_x[:, None] + shift_x[:, None] * progress
    cy = start_y[:, None] + shift_y[:, None] * progress - np.where(bounce, hop, 0.0)
    as32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return {"cx": as32(cx), "cy": as32(cy), "scale": as32(scale), "angle": as32(angle)}


def _start(radius, shift, size, fraction, extra_top=0.0):
    """A start coordinate that keeps [start, start + shift] (and a hop above it) inside [radius, size - radius]."""
    low = radius - np.minimum(shift, 0) + extra_top
    high = size - radius - np.maximum(shift, 0)
    middle = (low + high) / 2
    fits = high >= low
    return np.where(fits, low + fraction * (high - low), np.clip(middle, 0, size))
