"""Example prompts for the web UI, built from a GroundedWorld folder (its memory images and held-out captions)."""

import itertools
import logging
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
    """A key of vimi.serve.app.TASK_LABELS: subject, predict or retrieval_t2v."""
    text: str
    images: list[str] = field(default_factory=list)


def find_world_dir(world_dir: str | Path | None) -> Path | None:
    """The world folder to draw examples from: the one given, else the first default folder that exists."""
    if world_dir is not None:
        return Path(world_dir)
    for candidate in DEFAULT_WORLD_DIRS:
        if (Path(candidate) / "memory").is_dir():
            return Path(candidate)
    return None


def world_examples(world_dir: str | Path, limit: int = 6) -> list[Example]:
    """Subject-in-scene prompts from the memory's subject and scene images, plus held-out captions for retrieval.

    Reads only the generic manifest columns (id, text, image, kind; caption) so that a changed world
    schema cannot break the UI: a world that cannot be read gives no examples and a warning.
    """
    from vimi.data.manifest import iter_records, manifest_root

    world_dir = Path(world_dir)
    memory = world_dir / "memory"
    examples: list[Example] = []
    try:
        root = manifest_root(memory)
        subjects, scenes = [], []
        for record in iter_records(memory, columns=["text", "image", "kind"]):
            bucket = (
                subjects if record["kind"] == "subject" else scenes if record["kind"] == "scene" else None
            )
            if bucket is not None and len(bucket) < limit:
                bucket.append(str(root / record["image"]))
            if len(subjects) >= limit and len(scenes) >= limit:
                break
        for subject, scene in itertools.islice(zip(subjects, scenes), max(limit - 2, 1)):
            examples.append(Example("subject", "A <image> is moving around in <image>", [subject, scene]))
        if subjects:
            examples.append(Example("predict", "The object moves to the right", [subjects[0]]))
        heldout = world_dir / "videos" / "heldout"
        if heldout.is_dir():
            for record in itertools.islice(iter_records(heldout, columns=["caption"]), 2):
                examples.append(Example("retrieval_t2v", record["caption"]))
    except (VimiError, KeyError, OSError) as err:
        log.warning("no examples from %s: %s", world_dir, err)
    return examples
