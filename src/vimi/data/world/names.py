"""Made-up, pronounceable subject names ("blicket", "dax") built from syllables, unique per world.

A name carries no meaning, so a model can learn what a "blicket" looks like only from its images.
"""

import numpy as np

ONSETS = (
    "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "j", "w",
    "bl", "br", "dr", "fl", "gl", "gr", "kr", "pl", "sn", "st", "tr", "sk", "zh", "th",
)  # fmt: skip
VOWELS = ("a", "e", "i", "o", "u", "oo", "ee", "ai", "au")
CODAS = ("", "", "", "n", "k", "t", "x", "m", "p", "l", "sh", "r", "ck", "sp", "nd")

# Words a name must never be: English words likely to appear in captions, plus the world's own
# vocabulary (scene and motion words), so a name never collides with a word of meaning.
_STOPWORDS = """
    a an the and or but if of to in on at by for with from into onto over under across through while
    as is are was were be been being it its this that these those there here then than so too very
    up down left right top bottom back front side moves move moving spins spin grows grow shrinks
    shrink stays still bounce bounces slowly quickly slow fast photo view close image picture scene
    meadow desert night sky ocean snowfield snow field forest lava city sunset lavender plain
    background small large big tiny huge red green blue yellow white black brown pink purple orange
    grey gray cat dog man men woman boy girl baby ball box car bus toy tree sun moon star rock stone
    fish bird bat bee ant cow pig hen fox owl rat elk yak ape kid pet bed cup pot pan can jar hat
    cap bag pen pin net map toe leg arm ear eye lip hip fin tail nose head hand foot feet dot dots
    line lines tan van ban bad bed bid bud dad dam den dig dim dip dug fan fat fed fig fit fix fog
    fun fur gap gas gel gem get gum gun gut hit hot hug hum hut jab jam jet job jog jot jug kit lab
    lad lap let lid lit log lot mad mat mob mop mud mug nag nap nib nod not nut pad pal pat peg pet
    pit pod pop pot pub pun pup rag ram ran rap red rib rid rig rim rip rob rod rot rub rug rum run
    sad sat set sip sit six sob sod sum sun tab tag tap ten tin tip top tub tug van vet wag web wet
    wig win wit zap zip zoo baker banana kitten tiger table water paper pocket rocket ticket basket
    bucket jacket locket packet racket socket video seen resting look nothing empty against with
"""
STOPLIST = frozenset(_STOPWORDS.split())


def make_name(rng: np.random.Generator) -> str:
    """One random name: two or three syllables, the last one optionally closed by a consonant."""
    syllables = 2 if rng.random() < 0.8 else 3
    parts = []
    for i in range(syllables):
        onset = "" if i == 0 and rng.random() < 0.15 else ONSETS[rng.integers(len(ONSETS))]
        parts.append(onset + VOWELS[rng.integers(len(VOWELS))])
    parts.append(CODAS[rng.integers(len(CODAS))])
    return "".join(parts)


def generate_names(
    rng: np.random.Generator, count: int, exclude: set[str] | frozenset[str] = frozenset()
) -> list[str]:
    """`count` unique names, none in STOPLIST or `exclude`, in the order drawn (deterministic per rng)."""
    names: list[str] = []
    taken = set(exclude) | STOPLIST
    attempts = 0
    while len(names) < count:
        attempts += 1
        if attempts > 50 * count + 1000:
            raise RuntimeError(f"could not draw {count} unique names; the syllable space is too small")
        name = make_name(rng)
        if 3 <= len(name) <= 10 and name not in taken:
            taken.add(name)
            names.append(name)
    return names


def with_article(name: str, capital: bool = False) -> str:
    """'a blicket' / 'an ogle'."""
    article = "an" if name[0] in "aeiou" else "a"
    if capital:
        article = article.capitalize()
    return f"{article} {name}"
