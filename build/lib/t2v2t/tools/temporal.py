"""The temporal check of the synthetic test sets: do direction twins get their own caption?

A direction twin is its partner's frames in reverse order: same colour,
shape, size, background and speed, opposite direction. Only frame order tells them apart, so an
appearance-only model prefers the right video of a twin pair half the time (chance = 0.5).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def twin_pairs(attributes_file: str | Path, video_keys: Sequence[str]) -> list[tuple[int, int]]:
    """Index pairs (a, b) of evaluated videos that are each other's direction twin (a < b)."""
    attrs: dict[str, Any] = json.loads(Path(attributes_file).read_text())
    index = {k: i for i, k in enumerate(video_keys)}
    pairs = set()
    for key, info in attrs.items():
        twin = info.get("twin")
        if twin and key in index and twin in index:
            pairs.add(tuple(sorted((index[key], index[twin]))))
    return sorted(pairs)


def twin_preference(
    scores: np.ndarray, gt: Sequence[tuple[int, int]], pairs: Sequence[tuple[int, int]]
) -> dict[str, float]:
    """For every text of a twin, is its own video scored above the twin? Ties count half.

    ``scores`` is the text x video matrix, ``gt`` the (text, video) ground-truth rows.
    """
    texts_of: dict[int, list[int]] = {}
    for t, v in gt:
        texts_of.setdefault(int(v), []).append(int(t))
    wins = 0.0
    trials = 0
    for a, b in pairs:
        for own, other in ((a, b), (b, a)):
            for t in texts_of.get(own, []):
                diff = scores[t, own] - scores[t, other]
                wins += 1.0 if diff > 0 else 0.5 if diff == 0 else 0.0
                trials += 1
    return {
        "pairs": len(pairs),
        "trials": trials,
        "preferred": wins,
        "rate": wins / trials if trials else float("nan"),
        "chance": 0.5,
    }
