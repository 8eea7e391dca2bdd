"""Example prompts for the web UI, built from a GroundedWorld's held-out videos (one per task)."""

import itertools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from vimi.errors import VimiError

log = logging.getLogger(__name__)

# Where `vimi serve` looks for a world when none is named (the demo's and the default config's folders).
DEFAULT_WORLD_DIRS = ("outputs/demo/world", "outputs/world")


@dataclass
class Example:
    """One row of the examples gallery: the task, the prompt text and the images bound to its <image> slots."""

    task: str
    """subject, predict or retrieval_t2v (the keys of vimi.serve.app.TASK_LABELS)."""
    text: str
    images: list[str] = field(default_factory=list)


def find_world_dir(world_dir: str | Path | None) -> Path | None:
    """The world folder to draw examples from: the one given, else the first default folder that holds a world."""
    if world_dir is not None:
        return Path(world_dir)
    return next((Path(d) for d in DEFAULT_WORLD_DIRS if (Path(d) / "world.json").is_file()), None)


def subject_prompt(caption: str, names: list[str], images: list[Path]) -> tuple[str, list[str]]:
    """'A blicket spins in the meadow.' -> ('A blicket <image> spins in the meadow.', [blicket's image])."""
    found = []
    for name, image in zip(names, images):
        match = re.search(rf"\b{re.escape(name)}\b", caption)
        if match:
            found.append((match.start(), match.end(), str(image)))
    text, offset = caption, 0
    for _, end, _ in sorted(found):  # insert left to right, shifting by what was inserted before
        text = f"{text[: end + offset]} <image>{text[end + offset :]}"
        offset += len(" <image>")
    return text, [image for *_, image in sorted(found)]


def world_examples(world_dir: str | Path, limit: int = 6, frames_dir: Path | None = None) -> list[Example]:
    """Held-out clips as prompts: subject-driven (names + reference images), first-frame prediction, retrieval.

    A world that cannot be read gives no examples and a warning: the UI works without them.
    """
    from vimi.data.image_io import save_image
    from vimi.data.video_io import read_video
    from vimi.data.world import load_world

    examples: list[Example] = []
    try:
        world = load_world(world_dir)
        records = list(itertools.islice(world.videos("heldout"), limit))
        for record in records[: max(limit - 2, 1)]:
            images = [world.reference_image(subject) for subject in record.subjects]
            text, bound = subject_prompt(record.caption, record.subject_names, images)
            if bound:
                examples.append(Example("subject", text, bound))
        if records and frames_dir is not None:
            first = records[0]
            frame_path = Path(frames_dir) / f"{first.id}-first-frame.png"
            save_image(read_video(first.video, num_frames=1)[:, 0], frame_path)  # [C, 1, H, W] -> [C, H, W]
            examples.append(Example("predict", first.caption, [str(frame_path)]))
        if len(records) > 1:
            examples.append(Example("retrieval_t2v", records[-1].caption))
    except (VimiError, KeyError, OSError) as err:
        log.warning("no examples from %s: %s", world_dir, err)
    return examples
