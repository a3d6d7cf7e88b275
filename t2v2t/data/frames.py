"""The one function that decides which frames a video contributes.

The shard builder calls :func:`frame_indices` to choose the frames it stores; the loader calls
:func:`choose_candidates` to pick one stored candidate per segment for an epoch, and
:func:`subsample_segments` when it asks for fewer frames than a shard stores.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from t2v2t.seeding import rng_for

Mode = Literal["middle", "rand", "vindlu_middle"]
MODES: tuple[str, ...] = ("middle", "rand", "vindlu_middle")
# Test-time middle modes (one candidate per segment). ``vindlu_middle`` is VindLU's rule: its
# segments are ``[a, b-1]`` and it takes ``(a + b - 1) // 2``, one frame earlier than ``middle``
# on even-width segments (docs/evaluation.md, "Reproduce the paper's tables from VindLU's
# checkpoints").
MIDDLE_MODES: tuple[str, ...] = ("middle", "vindlu_middle")
FRAME_RULES = {"project": "middle", "vindlu": "vindlu_middle"}


def frames_before(vlen: int, fps: float, seconds: float | None) -> int:
    """How many of a video's ``vlen`` frames lie before ``seconds`` (frame ``i`` at ``i / fps``):
    ``ceil(seconds * fps)``, at least 1, at most ``vlen``; every frame when ``seconds`` is None.
    The shard builder samples from these only (VindLU's DiDeMo clips were cut to their first
    30 s: docs/data.md, "DiDeMo: the first 30 seconds")."""
    if seconds is None:
        return vlen
    return max(1, min(vlen, math.ceil(round(seconds * fps, 6))))


def segment_bounds(num_frames: int, vlen: int) -> list[tuple[int, int]]:
    """``num_frames`` equal segments of ``[0, vlen)``: boundaries ``linspace(0, vlen, n+1)`` as int."""
    edges = np.linspace(0, vlen, num_frames + 1).astype(int)
    return [(int(edges[i]), int(edges[i + 1])) for i in range(num_frames)]


def frame_indices(
    num_frames: int,
    vlen: int,
    mode: Mode,
    key: str = "",
    seed: int = 0,
    candidates: int = 1,
) -> list[list[int]]:
    """Frame indices per segment: ``num_frames`` lists, each holding that segment's candidates.

    ``middle`` takes each segment's middle index ``(a + b) // 2`` of ``[a, b)`` (one candidate);
    ``vindlu_middle`` takes ``(a + b - 1) // 2``, VindLU's own test-time rule.
    ``rand`` draws ``candidates`` distinct indices uniformly inside each segment (with repeats only
    when the segment is shorter than ``candidates``) from a generator seeded by ``(seed, key)``.
    Videos shorter than ``num_frames`` repeat their last frame. The result is a pure function of the
    arguments: flattened, it is sorted and every index lies in ``[0, vlen)``.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if vlen < 1:
        raise ValueError(
            f"vlen must be >= 1 (a video with no frames cannot be sampled), got {vlen}"
        )
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    if mode in MIDDLE_MODES:
        candidates = 1

    # Short videos: one segment per real frame, then the last frame repeated.
    real = min(num_frames, vlen)
    rng = rng_for(seed, key) if mode == "rand" else None
    segments: list[list[int]] = []
    for start, end in segment_bounds(real, vlen):
        if mode == "middle":
            segments.append([(start + end) // 2])
            continue
        if mode == "vindlu_middle":
            segments.append([(start + end - 1) // 2])
            continue
        width = end - start
        picks = rng.choice(width, size=candidates, replace=width < candidates)
        segments.append(sorted(int(start + p) for p in picks))
    while len(segments) < num_frames:
        segments.append([vlen - 1] * candidates)
    return segments


def choose_candidates(
    segments: list[list[int]], seed: int, epoch: int, key: str
) -> tuple[list[int], list[int]]:
    """Pick one stored candidate per segment from ``(seed, epoch, key)``.

    Returns ``(positions, indices)``: positions into the flattened stored frames (the order of the
    ``<key>.NNN.jpg`` members) and the chosen original frame indices.
    """
    rng = rng_for(seed, epoch, key)
    positions: list[int] = []
    indices: list[int] = []
    offset = 0
    for cands in segments:
        pick = int(rng.integers(len(cands))) if len(cands) > 1 else 0
        positions.append(offset + pick)
        indices.append(cands[pick])
        offset += len(cands)
    return positions, indices


def subsample_segments(
    num_stored: int, num_frames: int, mode: Mode, key: str, seed: int, epoch: int = 0
) -> list[int]:
    """Which of ``num_stored`` stored segments to use when ``num_frames`` are wanted (32 -> 12 -> 4).

    The same segment rule applied to the stored segments; ``rand`` is re-seeded per epoch.
    """
    if num_frames >= num_stored:
        return list(range(num_stored)) + [num_stored - 1] * (num_frames - num_stored)
    seg = frame_indices(num_frames, num_stored, mode, key=f"{key}#{epoch}", seed=seed)
    return [s[0] for s in seg]
