"""Distributed helpers: world info, process-group setup, and all-gather that keeps gradients."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_info() -> tuple[int, int, int]:
    """(rank, world_size, local_rank): from the process group, else torchrun's environment."""
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if _active():
        return dist.get_rank(), dist.get_world_size(), local_rank
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), local_rank


def is_main() -> bool:
    return world_info()[0] == 0


def init_distributed(backend: str | None = None) -> tuple[int, int, int]:
    """Join the torchrun process group when WORLD_SIZE > 1 (nccl on GPU, else gloo)."""
    rank, world, local_rank = world_info()
    if world > 1 and not _active():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, init_method="env://")
        rank, world, local_rank = world_info()
    return rank, world, local_rank


def group_rank_world() -> tuple[int, int]:
    """(rank, world_size) of the process group; (0, 1) in a process outside one."""
    return (dist.get_rank(), dist.get_world_size()) if _active() else (0, 1)


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` outside a process group)."""
    if not _active() or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if _active():
        dist.barrier()


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module under DDP / torch.compile wrappers (what checkpoints must store)."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def _gather_padded(x: torch.Tensor) -> tuple[list[torch.Tensor], list[int]]:
    """all_gather of tensors whose first dim may differ between ranks (pads, then trims)."""
    world = dist.get_world_size()
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    counts = [int(s.item()) for s in sizes]
    top = max(counts)
    padded = x.new_zeros((top, *x.shape[1:]))
    padded[: x.shape[0]] = x
    out = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(out, padded.contiguous())
    return [o[:c] for o, c in zip(out, counts, strict=True)], counts


# How VTC's gathered features send their gradient back (README.md / docs/training.md,
# "Training: the paper, VindLU's code and this project"): "local" is VindLU's rule, "global"
# the gradient of the loss over the global batch.
VTC_GATHERS = ("local", "global")


class _GatherWithGrad(torch.autograd.Function):
    """Forward: concatenate every rank's tensor. Backward, ``global``: sum the gradients of all
    ranks and keep this rank's slice, so the loss every rank computes over the global batch
    trains the local features (with DDP's gradient averaging: the global loss's gradient).
    ``local`` (VindLU's AllGather): this rank's slice of its own gradient, not summed, so after
    DDP's averaging the features get 1/world_size of the global loss's gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, mode: str) -> torch.Tensor:  # type: ignore[override]
        parts, counts = _gather_padded(x)
        rank = dist.get_rank()
        ctx.start, ctx.stop = sum(counts[:rank]), sum(counts[: rank + 1])
        ctx.mode = mode
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        grad = grad.contiguous()
        if ctx.mode == "global":
            dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.stop], None


def all_gather_with_grad(x: torch.Tensor, mode: str = "global") -> torch.Tensor:
    """Concatenate `x` from all ranks along dim 0, differentiable; identity on one process.
    ``mode``: how the gradient comes back (:data:`VTC_GATHERS`)."""
    if mode not in VTC_GATHERS:
        raise ValueError(f"gather mode {mode!r} is not one of {', '.join(VTC_GATHERS)}")
    if not _active() or dist.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x, mode)


def all_gather_tensor(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from all ranks along dim 0 without gradients (ids, labels)."""
    if not _active() or dist.get_world_size() == 1:
        return x
    parts, _ = _gather_padded(x.detach())
    return torch.cat(parts, dim=0)
