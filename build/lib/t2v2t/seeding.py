"""Stable seeds from (seed, epoch, key, ...) tuples.

Python's ``hash`` is salted per process, so keys are hashed with blake2b: the same tuple gives the
same generator on every machine, worker and run.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stable_int(value: int | str) -> int:
    """A non-negative 64-bit integer for an int or a string, identical across processes."""
    if isinstance(value, (int, np.integer)):
        if value < 0:
            raise ValueError(f"seed parts must be non-negative, got {value}")
        return int(value)
    digest = hashlib.blake2b(str(value).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def rng_for(*parts: int | str) -> np.random.Generator:
    """A numpy Generator seeded only by ``parts`` (never by worker id, partition or clock)."""
    return np.random.default_rng([stable_int(p) for p in parts])
