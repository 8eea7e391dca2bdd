"""Caption templates for videos and memory images. Every video caption names each subject, its motion
and the scene; every subject image caption names the subject."""

from vimi.data.world.names import with_article
from vimi.data.world.scenes import Scene

VIDEO_TEMPLATES_ONE = (
    "{a1} {m1} {where}.",
    "{where_cap}, {a1_low} {m1}.",
    "A video of {a1_low} that {m1} {where}.",
)
VIDEO_TEMPLATES_TWO = (
    "{a1} {m1} {where} while {a2} {m2}.",
    "{where_cap}, {a1_low} {m1} and {a2} {m2}.",
)
SUBJECT_TEMPLATES = (
    "{a} {where}.",
    "A photo of {a_low} {where}.",
    "{a}, seen {where}.",
    "A picture of {a_low} {where}.",
)
REFERENCE_TEMPLATE = "{a} on a plain background."
SCENE_TEMPLATES = ("A view of the {scene}.", "An empty {scene}.", "The {scene}, with nothing in it.")
DISTRACTOR_TEMPLATES = (
    "{a} {where}.",
    "A photo of {a_low} {where}.",
    "A picture of {a_low} {where}.",
    "{a} resting {where}.",
    "A close look at {a_low} {where}.",
    "{a}, seen {where}.",
)


def video_caption(names: list[str], motion_phrases: list[str], scene: Scene, template: int) -> str:
    """ "A blicket moves left slowly in the meadow while a dax spins quickly." (one or two subjects)."""
    fields = {
        "a1": with_article(names[0], capital=True),
        "a1_low": with_article(names[0]),
        "m1": motion_phrases[0],
        "where": scene.phrase,
        "where_cap": scene.phrase[0].upper() + scene.phrase[1:],
    }
    if len(names) == 1:
        return VIDEO_TEMPLATES_ONE[template % len(VIDEO_TEMPLATES_ONE)].format(**fields)
    fields.update(a2=with_article(names[1]), m2=motion_phrases[1])
    return VIDEO_TEMPLATES_TWO[template % len(VIDEO_TEMPLATES_TWO)].format(**fields)


def subject_caption(name: str, scene: Scene | None, template: int, templates=SUBJECT_TEMPLATES) -> str:
    """ "A photo of a blicket in the desert."; scene None gives the reference-image caption."""
    fields = {"a": with_article(name, capital=True), "a_low": with_article(name)}
    if scene is None:
        return REFERENCE_TEMPLATE.format(**fields)
    return templates[template % len(templates)].format(where=scene.phrase, **fields)


def scene_caption(scene: Scene, template: int) -> str:
    """ "A view of the meadow."."""
    return SCENE_TEMPLATES[template % len(SCENE_TEMPLATES)].format(scene=scene.name)


def distractor_caption(name: str, scene: Scene, template: int) -> str:
    """A caption of a distractor subject: like a subject caption, about a name no video uses."""
    return subject_caption(name, scene, template, DISTRACTOR_TEMPLATES)
