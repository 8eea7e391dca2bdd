"""torchrun helpers: process group set-up, DDP / FSDP2 wrapping, full state dicts, reductions."""

import contextlib
import datetime
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from vimi.utils.device import resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the torchrun job if there is one (env RANK/WORLD_SIZE); NCCL on GPU, gloo on CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device("auto")
    if device.type == "cuda":  # one GPU per process: torchrun's LOCAL_RANK picks it
        device = resolve_device(f"cuda:{local_rank}")
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown_distributed() -> None:
    """Leave the job together: a rank that tore gloo down while another still finished its last collective
    made that rank abort at exit ("terminate called without an active exception") on a loaded CPU."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over ranks (identity when not distributed)."""
    if dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= dist.get_world_size()
    return value


def broadcast_from_main(value: torch.Tensor) -> torch.Tensor:
    """Rank 0's value of a tensor on every rank (identity when not distributed)."""
    if dist.is_initialized():
        value = value.clone()
        dist.broadcast(value, src=0)
    return value


def gather_objects(obj) -> list:
    """Every rank's `obj`, in rank order (a one-element list when not distributed)."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def choose_parallel(parallel: str, num_params: int, fsdp_auto_params: int, info: DistInfo) -> str:
    """ "none" for one process; else "ddp" or "fsdp" (auto: FSDP2 above fsdp_auto_params parameters)."""
    if not info.is_distributed:
        return "none"
    if parallel == "auto":
        return "fsdp" if num_params > fsdp_auto_params else "ddp"
    return parallel


def wrap_model(
    model: nn.Module, mode: str, info: DistInfo, shard_modules: list[nn.Module] | None = None
) -> nn.Module:
    """DDP or FSDP2 (fully_shard) around `model`; `shard_modules` (e.g. transformer blocks) are sharded first."""
    if mode == "none":
        return model
    if mode == "ddp":
        device_ids = [info.local_rank] if info.device.type == "cuda" else None
        # find_unused_parameters: a batch may use no context embedding or no image tokens.
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)
    if mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        # Unlike DDP, fully_shard keeps each rank's own values for its shard; ranks seeded differently
        # would train a patchwork of inits. Start every rank from rank 0's weights, as DDP does.
        broadcast_module_state(model)
        for module in shard_modules or []:
            fully_shard(module)
        fully_shard(model)
        return model
    raise ValueError(f"unknown parallel mode {mode!r}")


@contextlib.contextmanager
def unsharded(model: nn.Module, mode: str) -> Iterator[None]:
    """The FSDP2 root's own parameters gathered for the block (a no-op otherwise): code that calls submodules
    directly, as sampling does, never runs the root's forward, whose hooks would gather them. Sharded
    submodules (the blocks) still gather and free their parameters around their own forward."""
    if mode != "fsdp":
        yield
        return
    model.unshard()
    try:
        yield
    finally:
        model.reshard()


def broadcast_module_state(model: nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s parameters and buffers to every rank (in place; a no-op without a process group)."""
    if not dist.is_initialized():
        return
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=src)


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """A DTensor shard gathered to the full tensor (a collective under FSDP), else the tensor itself."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def full_state_dict(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Gather every (possibly sharded) tensor to CPU; all ranks must call this under FSDP."""
    return {name: full_tensor(t.detach()).cpu() for name, t in tensors.items()}


def load_full_state_dict(module: nn.Module, state: dict[str, torch.Tensor], strict: bool = True) -> None:
    """Load a full (unsharded) state dict into a plain or FSDP2-sharded module."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    if any(hasattr(t, "full_tensor") for t in module.state_dict().values()):
        set_model_state_dict(module, state, options=StateDictOptions(full_state_dict=True, strict=strict))
    else:
        module.load_state_dict(state, strict=strict)


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, mode: str) -> dict:
    """The optimizer's state dict, gathered to full tensors under FSDP (collective there)."""
    if mode != "fsdp":
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(
        model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, mode: str) -> None:
    if mode != "fsdp":
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
