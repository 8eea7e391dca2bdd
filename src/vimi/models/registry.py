"""Registries of interchangeable model parts, chosen by name from the config (`model.backbone.kind`,
`model.encoder.kind`).

The registries live here, apart from the modules that register into them, so that no part imports
another to be found. A module registers its class with a decorator when it is imported; parts whose
import is slow (the LLM encoders import transformers) are registered by import path and imported only
when a config names them.
"""

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

from vimi.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> classes (or factories); `get` imports a lazily registered entry on first use."""

    def __init__(self, config_key: str):
        self.config_key = config_key  # named in errors, e.g. "model.backbone.kind"
        self._entries: dict[str, T | str] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@BACKBONES.register("video_dit")` above a class."""

        def add(entry: T) -> T:
            self._entries[name] = entry
            return entry

        return add

    def register_lazy(self, name: str, target: str) -> None:
        """Register "package.module:attribute", imported when `get(name)` is first called."""
        self._entries.setdefault(name, target)

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise ConfigError(f"{self.config_key}={name!r} is not one of {', '.join(self.names())}")
        entry = self._entries[name]
        if isinstance(entry, str):
            module, attribute = entry.split(":")
            entry = self._entries[name] = getattr(importlib.import_module(module), attribute)
        return entry

    def names(self) -> list[str]:
        return sorted(self._entries)


BACKBONES: Registry = Registry("model.backbone.kind")
"""Backbones: classes built as `cls(cfg: BackboneConfig, in_channels, cond_dim)`, with
`forward(x, c_noise, cond: Condition) -> out` of x's shape."""

ENCODERS: Registry = Registry("model.encoder.kind")
"""Multimodal encoders: `MultimodalEncoder` subclasses, built with `cls.from_config(cfg: EncoderConfig)`."""
