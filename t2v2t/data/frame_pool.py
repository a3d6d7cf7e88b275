"""Shared-memory frame buffers that loader workers write their batches into, reused all epoch.

A worker that hands a batch to the main process through ``DataLoader`` puts every tensor in
fresh shared memory: the kernel allocates, zeroes and maps each page of it on first touch, and
each tensor's segment travels as a file descriptor of its own. A :class:`FramePool` is made in
the main process before the workers start: per worker ``SLOTS`` buffers as big as the epoch's
largest batch. Worker ``w`` writes its ``k``-th batch's frames into slot ``k % SLOTS`` and sends
a :class:`PooledFrames` (which slot) with the batch's small arrays as numpy (pickled through the
pipe); the main process copies the frames out into its own memory, in the pin-memory thread when
there is one, else as it yields the batch, and gives the slot back (a semaphore per worker counts
its free slots), so what a caller keeps is never overwritten. Same pixels; the pages are touched
once per epoch instead of once per batch (docs/data.md, "Loader workers").
"""

from __future__ import annotations

import itertools
import math
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.multiprocessing as mp

__all__ = ["SLOTS", "FramePool", "PooledFrames", "frames_from_pool", "pooled"]

# Slots per worker: DataLoader keeps prefetch_factor (2) batches per worker in flight; the third
# is the one being written. A worker waits only while all three are still to be copied out.
SLOTS = 3

# The main process's live pools, by id: weak, so a loader dropped before its first batch (one
# started ahead and never used) takes its shared memory with it.
_POOLS: weakref.WeakValueDictionary[int, FramePool] = weakref.WeakValueDictionary()
_IDS = itertools.count()


class FramePool:
    """``workers`` x ``SLOTS`` uint8 buffers of ``slot_bytes`` each, in shared memory."""

    def __init__(self, workers: int, slot_bytes: int) -> None:
        self.id = next(_IDS)
        self.buffers = torch.empty((workers, SLOTS, max(1, slot_bytes)), dtype=torch.uint8)
        self.buffers.share_memory_()
        self.free = [mp.Semaphore(SLOTS) for _ in range(workers)]
        self._next = [0] * workers  # per worker, in its own process: the next slot to write
        _POOLS[self.id] = self

    def take(self, worker: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, PooledFrames]:
        """In ``worker``: a free slot viewed as uint8 ``shape``, and the note that names it."""
        numel = math.prod(shape)
        if numel > self.buffers.shape[2]:
            raise ValueError(
                f"{numel} bytes of frames do not fit a {self.buffers.shape[2]}-byte slot"
            )
        slot = self._next[worker]
        self._next[worker] = (slot + 1) % SLOTS
        self.free[worker].acquire()  # the main process has copied out what this slot held
        view = self.buffers[worker, slot, :numel].view(shape)
        return view, PooledFrames(self.id, worker, slot, tuple(shape))

    def copy_out(self, note: PooledFrames, pin: bool = False) -> torch.Tensor:
        """In the main process: the noted slot's frames as a tensor of its own; frees the slot."""
        src = self.buffers[note.worker, note.slot, : math.prod(note.shape)].view(note.shape)
        out = torch.empty(note.shape, dtype=torch.uint8, pin_memory=pin)
        out.copy_(src)
        self.free[note.worker].release()
        return out.permute(0, 1, 4, 2, 3)  # [B, T, 3, S, S] over channels-last memory

    def close(self) -> None:
        """Unblock every worker (an epoch stopped early must not leave one waiting for a slot)."""
        _POOLS.pop(self.id, None)
        for sem in self.free:
            for _ in range(SLOTS):
                sem.release()


@dataclass(frozen=True)
class PooledFrames:
    """A batch's frames waiting in a pool slot (what a worker sends instead of the tensor)."""

    pool: int
    worker: int
    slot: int
    shape: tuple[int, ...]

    def pin_memory(self, device: Any = None) -> torch.Tensor:
        """Called by ``DataLoader``'s pin-memory thread: the frames, copied into pinned memory."""
        return _POOLS[self.pool].copy_out(self, pin=True)


def pooled(batch: dict[str, Any], note: PooledFrames) -> None:
    """A worker's ``batch`` made ready to send: ``note`` for its frames, numpy for its other
    tensors (each tensor would cost a fresh shared-memory segment and a descriptor handover)."""
    batch["frames"] = note
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            batch[key] = value.numpy()


def frames_from_pool(
    batches: Iterator[dict[str, Any]], pool: FramePool
) -> Iterator[dict[str, Any]]:
    """``batches`` as the workers made them: frames copied out of ``pool`` (unless the pin-memory
    thread did), the other arrays tensors again."""
    try:
        for batch in batches:
            frames = batch.get("frames")
            if isinstance(frames, PooledFrames):
                batch["frames"] = pool.copy_out(frames)
            for key, value in batch.items():
                if isinstance(value, np.ndarray):
                    batch[key] = torch.from_numpy(value)
            yield batch
    finally:
        pool.close()
        close = getattr(batches, "close", None)
        if close is not None:
            close()
