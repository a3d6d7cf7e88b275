"""Streaming shard loader: deterministic, resumable, worker-count independent.

How an epoch is made (see :mod:`t2v2t.data.plan` for the pure part):

1. Shards are listed from ``manifest.json`` and checked against it (size always; sha256 with
   ``verify_hash=True``, once per shard per process: :mod:`t2v2t.data.shard_checks`). A bad
   shard is a :class:`ShardError` naming it, or with ``skip_bad_shards=True`` it leaves the plan
   with one counted warning.
2. Shard shuffle by ``(seed, epoch)`` -> split by rank into contiguous ranges of that sample
   order (a range may start or end inside a shard: the rank streams past the samples before its
   first one) -> sample shuffle through a simulated seeded buffer -> padding to equal samples
   per rank. All of it is decided up front from sample counts; nothing depends on workers or
   timing.
3. Split by worker at batch granularity: worker ``w`` of ``W`` builds global steps ``w, w+W, ...``
   which is exactly the round-robin order in which ``torch.utils.data.DataLoader`` collects
   batches from workers, so batches come back in plan order for any ``W``. Each worker streams
   the zstd shards it needs (skipping shards with nothing for it) and keeps only its samples.
   The price of worker-independence: most shards hold something for every worker, so each
   worker decompresses most of its rank's shards. Samples it does not need are streamed past
   without copying their bytes (about 5 us of CPU per tar member, against about 400 us per
   decoded 224p frame): with ``W`` workers that reading is done ``W`` times (roughly +10% CPU at
   W = 8 with 2 stored candidates per frame), while decoding is never duplicated.
4. Late decode: only the chosen candidate frames are decoded (per segment, from
   ``(seed, epoch, key)`` via :func:`t2v2t.data.frames.choose_candidates`), cropped/flipped/resized
   once per video (:mod:`t2v2t.data.augment`), written into a preallocated uint8 batch; captions are
   chosen per epoch and tokenised (:mod:`t2v2t.data.captions`).

Padding: each rank yields ``ceil(samples / world_size)`` samples per source (the last batch may
be short); the ranks one sample short repeat their last one, so an epoch repeats at most
``world_size - 1`` samples per source, as ``DistributedSampler`` does. Before padding, every key
appears exactly once across ranks. With ``captions_per_epoch="all"`` the plan's items are
(video, caption) pairs instead of videos (:func:`t2v2t.data.plan.train_plan`). Mixed sources alternate batches in VindLU's MetaLoader way (a seeded permutation of the
sources' batches, identical on every rank).

Resume: ``skip_samples`` counts the samples *this rank* has already consumed in the epoch (the sum
of ``len(batch["keys"])``); it must fall on a batch boundary, and the loader then yields exactly
the batches the uninterrupted run would have yielded next (skipped batches are not decoded).
An epoch resumed on another rank count (``earlier``: its parts run on other counts) is the rest of
that epoch replanned over this one by :mod:`t2v2t.data.elastic` (docs/reliability.md, "Elastic
resume").

The parts: shard checks (:mod:`t2v2t.data.shard_checks`), the per-worker shard stream
(:mod:`t2v2t.data.stream`), batch assembly and the ``DataLoader`` wrapper
(:mod:`t2v2t.data.batches`); this module plans a training epoch and puts them together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from t2v2t.data.augment import TRAIN_SCALE
from t2v2t.data.batches import BatchSource, PlannedBatches, PlannedLoader
from t2v2t.data.captions import CAPTIONS_PER_EPOCH, SENTENCE_LEN
from t2v2t.data.elastic import EpochItems, resumed_plans
from t2v2t.data.plan import RankPlan, interleave, train_plan
from t2v2t.data.shard_checks import SHARD_CHECKS
from t2v2t.data.shards import MANIFEST, ShardError, ShardInfo, read_manifest, shard_infos
from t2v2t.seeding import rng_for
from t2v2t.storage import ShardFolder

__all__ = ["DEFAULT_SHUFFLE_BUFFER", "TrainSource", "make_train_loader"]

DEFAULT_SHUFFLE_BUFFER = 1000


@dataclass(frozen=True)
class TrainSource:
    """One training corpus: its shard folder and per-corpus batch size, frames and text length."""

    dir: ShardFolder | str | Path  # a ShardFolder once made: the folder is resolved here
    batch_size: int
    num_frames: int
    max_text_len: int = SENTENCE_LEN

    def __post_init__(self) -> None:
        object.__setattr__(self, "dir", ShardFolder.of(self.dir))


def _resolve_skip(skip_samples: int, sizes: list[int]) -> int:
    """The number of whole batches that ``skip_samples`` consumed samples correspond to."""
    if skip_samples < 0:
        raise ValueError(f"skip_samples must be >= 0, got {skip_samples}")
    done = 0
    for k, n in enumerate(sizes):
        if done == skip_samples:
            return k
        if done > skip_samples:
            break
        done += n
    if done == skip_samples:
        return len(sizes)
    raise ValueError(
        f"skip_samples={skip_samples} is not a batch boundary of this epoch "
        f"({sum(sizes)} samples per rank in {len(sizes)} batches); "
        "it counts the samples this rank already consumed"
    )


def make_train_loader(
    sources: Sequence[TrainSource],
    tokenizer: Any,
    *,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    image_size: int = 224,
    skip_samples: int = 0,
    skip_bad_shards: bool = False,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    crop_scale: Sequence[float] = TRAIN_SCALE,
    hflip: bool = True,
    verify_hash: bool = False,
    pin_memory: bool = False,
    verify_stream: bool = True,
    decode_device: str | None = None,
    captions_per_epoch: str = "one",
    interp: str = "bilinear",
    pre_text: bool = False,
    earlier: Sequence[tuple[int, int]] = (),
    drop_last: bool = False,
) -> PlannedLoader:
    """The training batches of one epoch on one rank (see the module docstring).

    ``interp``: the crop's resampling (``bicubic``: VindLU's); ``pre_text``: VindLU's caption
    cleaning; ``drop_last``: VindLU's (no short last batch per source); ``captions_per_epoch``:
    ``one`` caption per video and epoch, or ``all`` (every (video, caption) once: docs/training.md).
    ``earlier``: ``(world size, samples per rank)`` of the parts of this epoch run on other rank
    counts (:mod:`t2v2t.data.elastic`); ``skip_samples`` then counts from the last of them.
    ``tokenizer`` may be ``None`` (batches then carry ``texts`` but no ``input_ids``; used by
    ``scripts/inspect_stream.py``). ``skip_samples``: samples this rank already consumed.
    ``crop_scale``: the random resized crop's area range (fractions of the stored frame);
    ``hflip=False`` never mirrors (captions that say "left"/"right"); crops stay the same.
    ``decode_device`` (e.g. ``"cuda"``): decode the JPEGs there in batches instead of in the
    workers (:mod:`t2v2t.data.gpu_decode`); ``None`` = the workers decode on CPU.

    Integrity (docs/reliability.md, "Shard integrity"): every shard is hashed as it streams and
    checked against the manifest at its end. ``skip_bad_shards=True`` also hashes every shard up
    front (once per process while its size and mtime stay), so a bad shard leaves this epoch's plan
    before any batch exists: the same decision on every rank and for any worker count.
    """
    scale = _check_train_args(sources, crop_scale, rank, world_size, captions_per_epoch)
    where = dict(seed=seed, epoch=epoch, rank=rank, world_size=world_size, drop_last=drop_last)
    verify = verify_hash or skip_bad_shards  # leaving a bad shard out needs its digest
    checked = [
        _check_source(i, spec, (skip_bad_shards, verify), captions_per_epoch == "all")
        for i, spec in enumerate(sources)
    ]
    resolved, steps, done = _plan_sources(checked, where, shuffle_buffer, earlier)
    sizes = [len(resolved[s].plan.batch(b)) for s, b in steps]  # last batches may be short
    skip = _resolve_skip(skip_samples, sizes)
    dataset = PlannedBatches(
        sources=resolved,
        steps=steps[skip:],
        train=True,
        tokenizer=tokenizer,
        seed=seed,
        epoch=epoch,
        image_size=image_size,
        crop_scale=scale,
        hflip=hflip,
        verify_stream=verify_stream,
        hint=" (or set data.skip_bad_shards=true to train without it)",
        decode=decode_device is None,
        train_interp=interp,
        clean_captions=pre_text,
    )
    return PlannedLoader(
        dataset,
        skip_batches=done + skip,
        batch_sizes=[0] * done + sizes,  # the earlier parts' steps: done on other rank counts
        num_workers=num_workers,
        pin_memory=pin_memory,
        skipped_shards=[msg for c in checked for msg in c.bad],
        loader_seed=_loader_seed(seed, epoch, rank, done + skip),
        decode_device=decode_device,
    )


def _check_train_args(
    sources: Sequence[TrainSource],
    crop_scale: Sequence[float],
    rank: int,
    world_size: int,
    captions_per_epoch: str,
) -> tuple[float, float]:
    """Refuse arguments no plan can be made from; the crop scale as a ``(min, max)`` pair."""
    if not sources:
        raise ValueError("make_train_loader needs at least one TrainSource")
    if captions_per_epoch not in CAPTIONS_PER_EPOCH:
        raise ValueError(
            f"captions_per_epoch: {captions_per_epoch!r} is not one of "
            f"{', '.join(CAPTIONS_PER_EPOCH)}"
        )
    scale = tuple(float(x) for x in crop_scale)
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(
            f"crop_scale must be [min, max] with 0 < min <= max <= 1, got {list(crop_scale)}"
        )
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world_size {world_size}")
    return scale[0], scale[1]


@dataclass(frozen=True)
class _Checked:
    """One corpus after the shard checks: what its epoch plan is made from."""

    spec: TrainSource
    directory: ShardFolder
    name: str
    good: list[ShardInfo]
    bad: list[str]
    tag: str
    captions: list[np.ndarray | None] | None

    @property
    def counts(self) -> list[int]:
        return [s.samples for s in self.good]

    def source(self, plan: RankPlan) -> BatchSource:
        """The worker's view of this corpus under ``plan``."""
        return BatchSource(
            directory=self.directory,
            name=self.name,
            shard_names=[self.good[s].name for s in plan.shards],
            shard_sha256=[self.good[s].sha256 for s in plan.shards],
            plan=plan,
            num_frames=self.spec.num_frames,
            max_text_len=self.spec.max_text_len,
        )


def _check_source(
    index: int, spec: TrainSource, checks: tuple[bool, bool], per_caption: bool
) -> _Checked:
    """One corpus's checked shards (``checks``: ``(skip_bad, verify_hash)``); ``per_caption``:
    its items are every (video, caption)."""
    skip_bad, verify_hash = checks
    directory = ShardFolder.of(spec.dir)  # TrainSource made it: the same value, typed
    manifest = read_manifest(directory)
    good, bad = SHARD_CHECKS.check(
        directory,
        shard_infos(manifest),
        skip_bad=skip_bad,
        verify_hash=verify_hash,
        hint=" (or pass skip_bad_shards=True to train without it)",
    )
    return _Checked(
        spec=spec,
        directory=directory,
        name=str(manifest.get("dataset", directory.name)),
        good=good,
        bad=bad,
        tag=f"{index}:{manifest.get('dataset')}/{manifest.get('split')}",
        captions=caption_counts(directory, good) if per_caption else None,
    )


def _plan_sources(
    checked: list[_Checked], where: dict[str, Any], shuffle_buffer: int, earlier: Sequence
) -> tuple[list[BatchSource], list[tuple[int, int]], int]:
    """This rank's sources, the epoch's steps left to take, and how many it already took.

    ``where``: the epoch's ``seed``, ``epoch``, ``rank``, ``world_size`` and ``drop_last``;
    ``earlier``: the parts of the epoch that ran on other rank counts (:mod:`t2v2t.data.elastic`).
    """
    if not earlier:  # the epoch's own plan (an exact resume skips into it)
        plans = [
            train_plan(
                c.counts,
                batch_size=c.spec.batch_size,
                shuffle_buffer=shuffle_buffer,
                tag=c.tag,
                captions=c.captions,
                **where,
            )
            for c in checked
        ]
        steps = interleave([p.num_batches for p in plans], where["seed"], where["epoch"])
        return [c.source(p) for c, p in zip(checked, plans, strict=True)], steps, 0
    world = where["world_size"]
    items = [
        EpochItems.plan(
            c.counts,
            c.captions,
            seed=where["seed"],
            epoch=where["epoch"],
            tag=c.tag,
            global_batch=c.spec.batch_size * world,
        )
        for c in checked
    ]
    plans, steps, done = resumed_plans(
        items,
        seed=where["seed"],
        epoch=where["epoch"],
        buffer=shuffle_buffer,
        earlier=earlier,
        world=world,
        rank=where["rank"],
        drop_last=where["drop_last"],
    )
    return [c.source(p) for c, p in zip(checked, plans, strict=True)], steps, done


def caption_counts(directory: ShardFolder, infos: Sequence[ShardInfo]) -> list[np.ndarray | None]:
    """Each shard's per-sample caption counts from the manifest (None: one caption each)."""
    out: list[np.ndarray | None] = []
    for info in infos:
        if info.captions is None:
            raise ShardError(
                f"{directory.join(MANIFEST)}: shard {info.name} has no caption counts "
                "(built before per-caption epochs): rebuild the folder with make shards, or set "
                "data.captions_per_epoch: one"
            )
        counts = info.caption_counts
        out.append(None if counts is None else np.asarray(counts, dtype=np.int64))
    return out


def _loader_seed(seed: int, epoch: int, rank: int, skip: int) -> int:
    """The DataLoader generator's seed: a function of the position, never of torch's RNG."""
    return int(rng_for(seed, epoch, "loader", rank, skip).integers(2**62))
