"""Exponential moving average of the weights, set by a half-life in optimizer steps."""

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn


def ema_decay(halflife_steps: float) -> float:
    """Per-step decay so that a weight's influence halves every `halflife_steps` steps (0: no averaging)."""
    return 0.5 ** (1.0 / halflife_steps) if halflife_steps > 0 else 0.0


class EMA:
    """Shadow copies of a module's floating-point state (parameters and buffers), updated after each step.

    The shadow tensors have the module's layout (plain or FSDP-sharded DTensors), so the update is
    local and needs no communication; `state_dict()` returns them under the module's own keys.
    """

    def __init__(
        self, module: nn.Module, halflife_steps: float, include: Callable[[str], bool] | None = None
    ):
        self.decay = ema_decay(halflife_steps)
        self.include = include or (lambda name: True)
        self.shadow = {name: t.detach().clone() for name, t in self._tracked(module)}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """shadow <- decay * shadow + (1 - decay) * current."""
        tracked = list(self._tracked(module))
        if not tracked:
            return
        shadows, currents = [self.shadow[name] for name, _ in tracked], [t.detach() for _, t in tracked]
        # One multi-tensor op (a few kernel launches on a GPU, one lerp per tensor on the CPU: the same values).
        torch._foreach_lerp_(shadows, currents, 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} tensors, e.g. {sorted(missing)[0]}")
        for name, tensor in self.shadow.items():
            value = state[name].to(tensor.device)
            if hasattr(tensor, "device_mesh"):  # an FSDP2 shard: cut the full tensor the same way
                from torch.distributed.tensor import distribute_tensor

                value = distribute_tensor(value, tensor.device_mesh, tensor.placements)
            tensor.copy_(value)

    def _tracked(self, module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
        return ((name, t) for name, t in _float_state(module) if self.include(name))

    @contextlib.contextmanager
    def applied(self, module: nn.Module) -> Iterator[None]:
        """Temporarily put the EMA weights into `module` (e.g. to sample), restoring the raw weights after."""
        backup = {name: t.detach().clone() for name, t in self._tracked(module)}
        with torch.no_grad():
            for name, tensor in self._tracked(module):
                tensor.copy_(self.shadow[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, tensor in self._tracked(module):
                    tensor.copy_(backup[name])


def _float_state(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    for name, tensor in module.state_dict(keep_vars=True).items():
        if torch.is_floating_point(tensor):
            yield name, tensor
