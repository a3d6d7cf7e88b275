"""The paper's recipe per dataset, in one table: what a shard build makes, what evaluation reads.

Each row of :data:`RECIPES` says which splits a full build makes (frames per video, sampling mode,
candidates), which splits the dataset's release has, which split (if any) retrieval evaluation
reads, and the caption length its texts are tokenized to. ``preprocessing/`` (the shard builder)
and ``t2v2t/retrieval`` (evaluation) both read it; adding a dataset is adding a row.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from t2v2t import storage
from t2v2t.errors import UsageError

SENTENCE_LEN = 32  # VindLU's max_txt_l for sentence datasets
PARAGRAPH_LEN = 64  # ... and for paragraph datasets (one paragraph per video: DiDeMo, ActivityNet)


@dataclass(frozen=True)
class SplitRecipe:
    split: str
    num_frames: int
    mode: str  # "rand" (training, with candidates) or "middle" (evaluation)
    candidates: int = 1


@dataclass(frozen=True)
class DatasetRecipe:
    build: tuple[SplitRecipe, ...]  # the splits a build without SPLIT= makes
    splits: tuple[str, ...]  # the splits the release has (an unknown SPLIT= is refused)
    eval_split: str | None = None  # the split retrieval evaluation reads (one of ``build``)
    text_len: int = SENTENCE_LEN  # evaluation's max text length in tokens
    # Frames come from the first max_seconds of each clip, every split (DiDeMo: VindLU's
    # didemo_2fps_360_trimed30 videos, cut to 30 s); None = the whole clip.
    max_seconds: float | None = None


_TRAIN_12 = SplitRecipe("train", 12, "rand", 2)

RECIPES: dict[str, DatasetRecipe] = {
    "webvid": DatasetRecipe((SplitRecipe("train", 4, "rand", 2),), ("train", "val")),
    "cc3m": DatasetRecipe((SplitRecipe("train", 1, "middle"),), ("train", "val")),
    "msrvtt": DatasetRecipe(
        (_TRAIN_12, SplitRecipe("test", 12, "middle")),
        ("train", "train7k", "train9k", "test", "validate"),  # train = the 7k list (docs/data.md)
        eval_split="test",
    ),
    "didemo": DatasetRecipe(
        (_TRAIN_12, SplitRecipe("test", 12, "middle")),
        ("train", "val", "test"),
        eval_split="test",
        text_len=PARAGRAPH_LEN,
        max_seconds=30.0,
    ),
    "anet": DatasetRecipe(
        (_TRAIN_12, SplitRecipe("val", 32, "middle")),
        ("train", "val", "val_1", "val_2"),
        eval_split="val",
        text_len=PARAGRAPH_LEN,
    ),
    # Any corpus: fine-tuned from its train split and evaluated on its test split (a build
    # makes train only: the test split is its own folder or ANNOTATIONS=, docs/training.md,
    # "Which corpora").
    "folder": DatasetRecipe((_TRAIN_12,), ("train", "val", "test"), eval_split="test"),
    "vindlu": DatasetRecipe(
        (_TRAIN_12, SplitRecipe("test", 12, "middle")), ("train", "val", "test"), eval_split="test"
    ),
    # webdataset tars of any corpus (video2dataset / img2dataset output): WebVid's sampling;
    # FRAMES=1 for image tars.
    "wds": DatasetRecipe((SplitRecipe("train", 4, "rand", 2),), ("train", "val", "test")),
}
# The paper's evaluation datasets (its ablation table; `make ablation`'s default).
PAPER_EVAL = ("msrvtt", "didemo", "anet")


def dataset_recipe(dataset: str) -> DatasetRecipe:
    """The row for ``dataset``; an unknown name is one line listing the known ones."""
    if dataset not in RECIPES:
        raise UsageError(
            f"unknown dataset (DATASET={dataset}): choose one of {', '.join(sorted(RECIPES))}"
        )
    return RECIPES[dataset]


def recipe(dataset: str, split: str | None = None, frames: int | None = None) -> list[SplitRecipe]:
    """The splits to build: all of the recipe's, or the one asked (splits outside the recipe are
    evaluation splits: ``middle``, one candidate), with the frame count overridden when given."""
    row = dataset_recipe(dataset)
    if split is not None and split not in row.splits:
        raise UsageError(
            f"unknown split for {dataset} (SPLIT={split}): choose one of {', '.join(row.splits)}"
        )
    if frames is not None and frames < 1:
        raise UsageError(f"frames per video must be >= 1 (FRAMES={frames}): e.g. FRAMES=4")
    splits = list(row.build)
    if split is not None:
        known = [s for s in splits if s.split == split]
        if not known and split.startswith("train"):  # another training list (MSR-VTT train9k)
            known = [replace(s, split=split) for s in splits if s.split == "train"]
        splits = known or [SplitRecipe(split, splits[-1].num_frames, "middle")]
    if frames is not None:
        splits = [replace(s, num_frames=frames) for s in splits]
    return splits


def eval_datasets() -> tuple[str, ...]:
    """The datasets retrieval evaluation knows (those with an evaluation split), table order."""
    return tuple(name for name, row in RECIPES.items() if row.eval_split is not None)


def eval_recipe(dataset: str) -> SplitRecipe:
    """The split evaluation reads for ``dataset``, with its frame count (docs/evaluation.md,
    "Two-stage retrieval and the fusions")."""
    row = dataset_recipe(dataset)
    if row.eval_split is None:
        raise UsageError(
            f"{dataset} has no evaluation split; evaluate one of {', '.join(eval_datasets())}"
        )
    return recipe(dataset, row.eval_split)[0]


def eval_shard_dir(dataset: str, root: str | Path = "shards") -> Path | str:
    """Where ``make shards DATASET=<dataset>`` puts the evaluation split: ``<root>/<ds>/<split>_<T>f``
    (a URL string under a URL root, docs/storage.md, "Object storage")."""
    r = eval_recipe(dataset)
    return storage.join(root, dataset, f"{r.split}_{r.num_frames}f")


def text_len(dataset: str) -> int:
    """Evaluation's max text length for ``dataset``; a dataset outside the table: sentences."""
    row = RECIPES.get(dataset)
    return row.text_len if row is not None else SENTENCE_LEN
