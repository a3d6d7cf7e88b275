"""Evaluation reading: every video once across ranks, in manifest order, with its captions.

Built on the training loader's parts: the same shard checks (:mod:`t2v2t.data.shard_checks`),
stream (:mod:`t2v2t.data.stream`) and batch assembly (:mod:`t2v2t.data.batches`), with an
unpadded contiguous plan (:func:`t2v2t.data.plan.eval_plan`).
An evaluation opens its shard folder once (:func:`open_eval_shards`: one manifest read) and
reads each shard's bytes once: the batches carry the captions beside the frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t2v2t.data.batches import BatchSource, PlannedBatches, PlannedLoader
from t2v2t.data.plan import eval_plan
from t2v2t.data.schema import META_EXT, SampleMeta
from t2v2t.data.shard_checks import SHARD_CHECKS
from t2v2t.data.shards import (
    ShardError,
    ShardInfo,
    read_manifest,
    read_shard,
    shard_infos,
)
from t2v2t.storage import ShardFolder

__all__ = ["EvalShards", "EvalTexts", "eval_texts", "make_eval_loader", "open_eval_shards"]


@dataclass(frozen=True)
class EvalShards:
    """An evaluation shard folder, opened: its manifest (read once) and its checked shards."""

    directory: ShardFolder  # a local folder or a shard URL, resolved once
    manifest: dict[str, Any]
    infos: list[ShardInfo]

    @property
    def num_videos(self) -> int:
        return sum(info.samples for info in self.infos)

    @property
    def num_frames(self) -> int:
        return int(self.manifest["num_frames"])


def open_eval_shards(
    shard_dir: str | Path | ShardFolder | EvalShards, *, verify_hash: bool = False
) -> EvalShards:
    """Read the manifest and check every shard's size (a stat); an :class:`EvalShards` as is."""
    if isinstance(shard_dir, EvalShards):
        return shard_dir
    directory = ShardFolder.of(shard_dir)  # a URL stays a string
    manifest = read_manifest(directory)
    infos, _ = SHARD_CHECKS.check(
        directory, shard_infos(manifest), skip_bad=False, verify_hash=verify_hash
    )
    return EvalShards(directory=directory, manifest=manifest, infos=infos)


def make_eval_loader(
    shard_dir: str | Path | EvalShards,
    *,
    batch_size: int,
    num_frames: int,
    image_size: int = 224,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    pin_memory: bool = False,
    verify_hash: bool = False,
    verify_stream: bool = True,
    preprocess: str = "project",
) -> PlannedLoader:
    """Evaluation batches: rank ``r`` gets a contiguous slice of the manifest order, unpadded.

    Every video appears exactly once across ranks; ``batch["index"]`` is its manifest position,
    ``batch["keys"]`` its key and ``batch["captions"]`` its captions (a list per video).
    Frames: the stored middle frames (subsampled when fewer are asked), short side resized to
    ``image_size`` and centre-cropped; ``preprocess="vindlu"``: the whole frame squashed to
    ``image_size`` x ``image_size`` (bicubic). Ranks may yield different numbers of batches.
    """
    if preprocess not in ("project", "vindlu"):
        raise ValueError(f"preprocess must be project or vindlu, got {preprocess!r}")
    shards = open_eval_shards(shard_dir, verify_hash=verify_hash)
    directory, manifest, infos = shards.directory, shards.manifest, shards.infos
    counts = [s.samples for s in infos]
    plan = eval_plan(counts, rank=rank, world_size=world_size, batch_size=batch_size)
    src = BatchSource(
        directory=directory,
        name=str(manifest.get("dataset", directory.name)),
        shard_names=[s.name for s in infos],
        shard_sha256=[s.sha256 for s in infos],
        plan=plan,
        num_frames=num_frames,
        max_text_len=0,
    )
    steps = [(0, b) for b in range(plan.num_batches)]
    dataset = PlannedBatches(
        sources=[src],
        steps=steps,
        train=False,
        tokenizer=None,
        seed=0,
        epoch=0,
        image_size=image_size,
        verify_stream=verify_stream,
        preprocess=preprocess,
    )
    sizes = [len(plan.batch(b)) for b in range(plan.num_batches)]
    return PlannedLoader(
        dataset,
        skip_batches=0,
        batch_sizes=sizes,
        num_workers=num_workers,
        pin_memory=pin_memory,
        skipped_shards=[],
    )


@dataclass(frozen=True)
class EvalTexts:
    """Every caption of a shard folder in manifest order, and the video each belongs to."""

    texts: list[str]
    text_video: list[int]  # index into video_keys
    video_keys: list[str]

    @classmethod
    def of_videos(cls, keys: list[str], captions: list[list[str]]) -> EvalTexts:
        """From each video's key and captions, in manifest order."""
        texts = [c for caps in captions for c in caps]
        text_video = [v for v, caps in enumerate(captions) for _ in caps]
        return cls(texts=texts, text_video=text_video, video_keys=list(keys))


def eval_texts(shard_dir: str | Path | EvalShards) -> EvalTexts:
    """Every caption of a shard folder, for callers that want the captions alone (an evaluation
    gets them with its frames)."""
    shards = open_eval_shards(shard_dir)
    directory, infos = shards.directory, shards.infos
    texts: list[str] = []
    text_video: list[int] = []
    keys: list[str] = []
    for info in infos:
        before = len(keys)
        # read_shard hashes on the way: a changed shard is the one-line digest error.
        for sample in read_shard(directory, info.name, info.sha256):
            meta = SampleMeta.from_json(sample[META_EXT])
            for caption in meta.captions:
                texts.append(caption)
                text_video.append(len(keys))
            keys.append(meta.key)
        if len(keys) - before != info.samples:
            path = directory.join(info.name)
            raise ShardError(
                f"{path}: {len(keys) - before} samples, the manifest says {info.samples}"
            )
    return EvalTexts(texts=texts, text_video=text_video, video_keys=keys)
