"""The paper's shard recipe per dataset."""

from __future__ import annotations

from dataclasses import dataclass, replace

from t2v2t.errors import UsageError


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

# The splits each dataset's release has (an unknown SPLIT= is refused, not built).
SPLITS: dict[str, tuple[str, ...]] = {
    "webvid": ("train", "val"),
    "cc3m": ("train", "val"),
    "msrvtt": ("train", "test", "validate"),
    "didemo": ("train", "val", "test"),
    "anet": ("train", "val", "val_1", "val_2"),
    "folder": ("train", "val", "test"),
    "vindlu": ("train", "val", "test"),
}


def recipe(dataset: str, split: str | None = None, frames: int | None = None) -> list[SplitRecipe]:
    """The splits to build: all of the recipe's, or the one asked (splits outside the recipe are
    evaluation splits: ``middle``, one candidate), with the frame count overridden when given."""
    if dataset not in RECIPES:
        raise UsageError(
            f"unknown dataset (DATASET={dataset}): choose one of {', '.join(sorted(RECIPES))}"
        )
    if split is not None and split not in SPLITS[dataset]:
        raise UsageError(
            f"unknown split for {dataset} (SPLIT={split}): choose one of "
            f"{', '.join(SPLITS[dataset])}"
        )
    if frames is not None and frames < 1:
        raise UsageError(f"frames per video must be >= 1 (FRAMES={frames}): e.g. FRAMES=4")
    splits = RECIPES[dataset]
    if split is not None:
        known = [s for s in splits if s.split == split]
        splits = known or [SplitRecipe(split, splits[-1].num_frames, "middle")]
    if frames is not None:
        splits = [replace(s, num_frames=frames) for s in splits]
    return splits
