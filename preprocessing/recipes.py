"""The paper's shard recipe per dataset (DESIGN.md section 4 and the helpers' contract)."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class SplitRecipe:
    split: str
    num_frames: int
    mode: str  # "rand" (training, with candidates) or "middle" (evaluation)
    candidates: int = 1


RECIPES: dict[str, list[SplitRecipe]] = {
    "webvid": [SplitRecipe("train", 4, "rand", 2)],
    "cc3m": [SplitRecipe("train", 1, "middle")],
    "msrvtt": [SplitRecipe("train", 12, "rand", 2), SplitRecipe("test", 12, "middle")],
    "didemo": [SplitRecipe("train", 12, "rand", 2), SplitRecipe("test", 12, "middle")],
    "anet": [SplitRecipe("train", 12, "rand", 2), SplitRecipe("val", 32, "middle")],
    "folder": [SplitRecipe("train", 12, "rand", 2)],
    "vindlu": [SplitRecipe("train", 12, "rand", 2), SplitRecipe("test", 12, "middle")],
}

# The annotation file whose presence means "the real corpus is here" (else: synthetic).
NATIVE_MARKERS: dict[str, str] = {
    "webvid": "results_2M_train.csv",
    "cc3m": "00000",
    "msrvtt": "MSRVTT_data.json",
    "didemo": "train_data.json",
    "anet": "train.json",
    "folder": "captions.csv",
    "vindlu": "train.json",
}


def recipe(dataset: str, split: str | None = None, frames: int | None = None) -> list[SplitRecipe]:
    """The splits to build: all of the recipe's, or the one asked (unknown splits are evaluation
    splits: ``middle``, one candidate), with the frame count overridden when given."""
    if dataset not in RECIPES:
        raise ValueError(f"no recipe for dataset {dataset!r}; known: {', '.join(sorted(RECIPES))}")
    splits = RECIPES[dataset]
    if split is not None:
        known = [s for s in splits if s.split == split]
        splits = known or [SplitRecipe(split, splits[-1].num_frames, "middle")]
    if frames is not None:
        splits = [replace(s, num_frames=frames) for s in splits]
    return splits
