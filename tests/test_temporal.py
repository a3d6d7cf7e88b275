"""The demo's temporal check (t2v2t/tools/temporal.py) on hand-made scores with known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from t2v2t.tools.temporal import twin_pairs, twin_preference


def test_twin_pairs_from_the_attribute_file(tmp_path: Path) -> None:
    attrs = {
        "a": {"twin": "b"},
        "b": {"twin": "a"},  # the same pair seen from the other side: listed once
        "c": {"twin": "d"},
        "d": {"twin": "c"},
        "e": {"twin": "gone"},  # its twin was not evaluated
        "f": {},
    }
    path = tmp_path / "synthetic_attributes.json"
    path.write_text(json.dumps(attrs))
    # Indices are positions in the evaluated order, smaller first.
    assert twin_pairs(path, ["d", "a", "f", "c", "b", "e"]) == [(0, 3), (1, 4)]
    assert twin_pairs(path, ["a", "c"]) == []


def test_twin_preference_counts_own_video_above_its_twin() -> None:
    # Videos 0/1 and 2/3 are twins; video 4 has none. Rows are texts.
    scores = np.full((6, 5), 9.0)  # other videos score high: only own vs twin may count
    gt = [(0, 0), (1, 1), (2, 2), (3, 2), (4, 3), (5, 4)]
    scores[0, [0, 1]] = [0.9, 0.1]  # own above twin: 1
    scores[1, [1, 0]] = [0.2, 0.8]  # twin above own: 0
    scores[2, [2, 3]] = [0.5, 0.5]  # tie: 0.5
    scores[3, [2, 3]] = [0.7, 0.3]  # second caption of video 2: 1
    scores[4, [3, 2]] = [0.6, 0.4]  # 1
    scores[5, 4] = -9.0  # no twin: not a trial
    out = twin_preference(scores, gt, [(0, 1), (2, 3)])
    assert out == {"pairs": 2, "trials": 5, "preferred": 3.5, "rate": 0.7, "chance": 0.5}
    # Every score of a twin pair swapped between the two videos: the answer flips to 1 - rate.
    swapped = scores.copy()
    swapped[:, [0, 1, 2, 3]] = scores[:, [1, 0, 3, 2]]
    assert math.isclose(twin_preference(swapped, gt, [(0, 1), (2, 3)])["rate"], 0.3)


def test_twin_preference_without_pairs_is_undefined() -> None:
    out = twin_preference(np.zeros((2, 2)), [(0, 0), (1, 1)], [])
    assert (out["pairs"], out["trials"], out["preferred"]) == (0, 0, 0.0)
    assert math.isnan(out["rate"])
