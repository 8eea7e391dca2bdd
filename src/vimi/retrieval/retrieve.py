"""Retrieval at generation time: ground a text-only prompt in examples from the user's image library."""

import threading
from dataclasses import dataclass
from pathlib import Path

from vimi.retrieval.sharded import ShardedIndex

_OPEN: dict[str, ShardedIndex] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class RetrievedExample:
    """One image-text pair of the memory that matches the prompt."""

    text: str
    image: str
    """Absolute path of the image."""
    score: float
    id: str = ""


def cached_index(path: str | Path) -> ShardedIndex:
    """Open an index folder once per process (shards are memory-mapped, so this is cheap to keep)."""
    key = str(Path(path).resolve())
    with _LOCK:
        if key not in _OPEN:
            _OPEN[key] = ShardedIndex(key)
        return _OPEN[key]


def retrieve_examples(
    text: str, index: ShardedIndex | str | Path, k: int = 4, min_score: float = 0.0
) -> list[RetrievedExample]:
    """The top-k (text, image, score) pairs for a prompt, best first (fewer if fewer match)."""
    if not isinstance(index, ShardedIndex):
        index = cached_index(index)
    hits = index.hits([text], k)[0]
    return [RetrievedExample(h.text, h.image, h.score, h.id) for h in hits if h.score >= min_score]
