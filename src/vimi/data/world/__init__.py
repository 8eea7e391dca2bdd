"""GroundedWorld: vimi's synthetic world of named subjects, scenes and motions, with exact ground truth.

from vimi.data.world import build_world, load_world
build_world(WorldConfig(preset="small"), "outputs/world")
world = load_world("outputs/world")
world.subjects, world.scenes, world.motions            # tables
for record in world.videos("heldout"): ...              # VideoGroundTruth: boxes, centers, scales, angles
world.renderer.render_subject(world.subject_index("blicket"), world.scene_index("meadow"))
"""

from vimi.data.world.build import VIDEO_SCHEMA, WorldSummary, build_world, sample_world_subjects
from vimi.data.world.loader import GroundedWorld, VideoGroundTruth, load_world
from vimi.data.world.memory import MEMORY_SCHEMA
from vimi.data.world.motions import MOTION_IDS, MOTIONS, SPEEDS, Motion, motion_phrase, sample_poses
from vimi.data.world.presets import PRESETS, apply_preset
from vimi.data.world.render import WorldRenderer
from vimi.data.world.scenes import SCENE_IDS, SCENES, Scene, scene_background
from vimi.data.world.subjects import Subject, make_sprite, sample_appearance

__all__ = [
    "MEMORY_SCHEMA",
    "MOTIONS",
    "MOTION_IDS",
    "PRESETS",
    "SCENES",
    "SCENE_IDS",
    "SPEEDS",
    "VIDEO_SCHEMA",
    "GroundedWorld",
    "Motion",
    "Scene",
    "Subject",
    "VideoGroundTruth",
    "WorldRenderer",
    "WorldSummary",
    "apply_preset",
    "build_world",
    "load_world",
    "make_sprite",
    "motion_phrase",
    "sample_appearance",
    "sample_poses",
    "sample_world_subjects",
    "scene_background",
]
