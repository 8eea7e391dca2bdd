"""A cache of frozen encoders' outputs: an in-memory LRU, optionally backed by safetensors files on disk.

Keys hash the prompt's text and image bytes with the encoder's identity (class, config, weights), so
a changed image file, prompt or model never returns stale tokens. The task is not part of the key:
encoders see only the segments (templates put the task into the text).
"""

import functools
import hashlib
import logging
import os
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from vimi.errors import PromptError
from vimi.prompt import Image, MultimodalPrompt, Text
from vimi.utils.atomic import atomic_path

log = logging.getLogger(__name__)

FILE_DIGEST_CACHE_SIZE = 65536
"""Image-file digests remembered (~100 bytes each): a long run over many prompts stays bounded."""


@functools.lru_cache(maxsize=FILE_DIGEST_CACHE_SIZE)
def _file_digest(path: str, mtime_ns: int, size: int) -> bytes:
    """The digest of a file's bytes, memoised on (path, mtime, size) so an unchanged file is read once."""
    return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).digest()


def image_digest(image: Image) -> bytes:
    """A digest of an image's content: the file's bytes for a path, dtype/shape/values for a tensor."""
    if isinstance(image.source, Tensor):
        tensor = image.source.detach().cpu().contiguous()
        digest = hashlib.blake2b(f"{tensor.dtype}:{tuple(tensor.shape)}".encode(), digest_size=16)
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.digest()
    path = image.source
    try:
        stat = os.stat(path)
        return _file_digest(str(path), stat.st_mtime_ns, stat.st_size)
    except (OSError, ValueError) as err:
        raise PromptError(f"prompt image {path!r} cannot be read: {err}") from None


def prompt_key(prompt: MultimodalPrompt, encoder_identity: str) -> str:
    """The cache key of one prompt under one encoder."""
    digest = hashlib.blake2b(encoder_identity.encode(), digest_size=20)
    for segment in prompt.segments:
        if isinstance(segment, Text):
            data = segment.text.encode("utf-8")
            digest.update(b"T" + len(data).to_bytes(8, "little") + data)
        else:
            digest.update(b"I" + image_digest(segment))
    return digest.hexdigest()


class EncoderCache:
    """Per-prompt token rows [L, D]: an LRU of `max_items` in memory, and safetensors files under `cache_dir`."""

    def __init__(self, max_items: int = 512, cache_dir: str | Path | None = None):
        self.max_items = max_items
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._memory: OrderedDict[str, Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Tensor | None:
        if key in self._memory:
            self._memory.move_to_end(key)
            self.hits += 1
            return self._memory[key]
        if self.cache_dir is not None:
            path = self._path(key)
            if path.is_file():
                try:
                    tokens = load_file(path)["tokens"]
                except Exception as err:  # a truncated or foreign file is a miss, not a crash
                    log.warning("ignoring unreadable encoder cache file %s: %s", path, err)
                else:
                    self.hits += 1
                    self._remember(key, tokens)
                    return tokens
        self.misses += 1
        return None

    def put(self, key: str, tokens: Tensor) -> None:
        tokens = tokens.detach().cpu().contiguous()
        self._remember(key, tokens)
        if self.cache_dir is not None:
            with atomic_path(self._path(key)) as tmp:
                save_file({"tokens": tokens}, str(tmp))

    def __len__(self) -> int:
        return len(self._memory)

    def _remember(self, key: str, tokens: Tensor) -> None:
        if self.max_items <= 0:
            return
        self._memory[key] = tokens
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_items:
            self._memory.popitem(last=False)

    def _path(self, key: str) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / key[:2] / f"{key}.safetensors"
