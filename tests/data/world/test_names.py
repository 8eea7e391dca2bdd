"""Subject names: made up, unique, never English words or world vocabulary."""

import numpy as np

from vimi.data.world.names import STOPLIST, generate_names, with_article


def test_names_are_unique_and_never_stoplist_words():
    names = generate_names(np.random.default_rng(0), 5000)
    assert len(set(names)) == 5000
    assert not set(names) & STOPLIST
    assert all(name.isalpha() and name.islower() and 3 <= len(name) <= 10 for name in names)


def test_names_respect_exclusions_and_are_deterministic():
    first = generate_names(np.random.default_rng(1), 50)
    again = generate_names(np.random.default_rng(1), 50)
    assert first == again
    other = generate_names(np.random.default_rng(1), 50, exclude=set(first[:10]))
    assert not set(other) & set(first[:10])


def test_articles():
    assert with_article("ogle") == "an ogle"
    assert with_article("blicket", capital=True) == "A blicket"
