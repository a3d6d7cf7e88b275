"""Batch assembly for training and evaluation: the plan's batches, built in the workers.

:class:`PlannedBatches` yields the batches ``steps[w::W]`` in worker ``w`` of ``W`` (the order in
which ``DataLoader`` collects them, see :mod:`t2v2t.data.loader`): only the chosen candidate frames
are decoded, cropped/flipped/resized once per video (:mod:`t2v2t.data.augment`) into a
preallocated uint8 batch; training captions are chosen per epoch and tokenised
(:mod:`t2v2t.data.captions`), evaluation batches carry every caption. :class:`PlannedLoader` runs
it through ``DataLoader`` and raises a worker's shard error as it was.

``frames`` come out as a ``[B, T, 3, S, S]`` uint8 view over channels-last (``[B, T, S, S, 3]``)
memory: that layout is what the decoder and the resize write without a transpose.
:func:`t2v2t.data.augment.normalize` (on the device) returns a contiguous float tensor.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from t2v2t.data.augment import (
    TRAIN_SCALE,
    Crop,
    center_crop,
    decode_jpegs,
    full_frame,
    train_crop,
)
from t2v2t.data.captions import caption_in_pass, choose_caption, pre_text, tokenize, video_id
from t2v2t.data.frame_pool import FramePool, frames_from_pool, pooled
from t2v2t.data.frames import choose_candidates, subsample_segments
from t2v2t.data.gpu_decode import decode_on_device, pack_jpegs
from t2v2t.data.integrity import ShardError, corrupt_message
from t2v2t.data.plan import RankPlan
from t2v2t.data.schema import META_EXT, SampleMeta, frame_ext
from t2v2t.data.shards import shard_matches
from t2v2t.data.stream import ShardStream
from t2v2t.interrupts import own_process_group
from t2v2t.retry import StorageError
from t2v2t.storage import ShardFolder

__all__ = ["BatchSource", "PlannedBatches", "PlannedLoader", "pick_frames", "shards_hashed_by"]


def pick_frames(
    meta: SampleMeta, num_frames: int, seed: int, epoch: int
) -> tuple[list[int], list[int]]:
    """``(stored positions, original frame indices)`` of the ``num_frames`` frames to use.

    One candidate per stored segment from ``(seed, epoch, key)``; when fewer frames are asked
    than segments are stored, :func:`subsample_segments` picks the segments (32 -> 12 -> 4).
    """
    positions, indices = choose_candidates(meta.frame_indices, seed, epoch, meta.key)
    mode = meta.sampling.get("mode", "middle")
    chosen = subsample_segments(len(positions), num_frames, mode, meta.key, seed, epoch)
    return [positions[s] for s in chosen], [indices[s] for s in chosen]


def shards_hashed_by(
    worker: int, workers: int, steps: list[tuple[int, int]], sources: list[BatchSource]
) -> list[set[int]]:
    """Per source, the shards (stream order) that ``worker`` of ``workers`` hashes this epoch.

    Each shard the rank streams is hashed by one worker: the one whose batch needs it first
    (step ``i`` of ``steps`` is worker ``i % workers``'s). Most shards hold samples for every
    worker, and each of them streams it (docs/reliability.md, "Shard integrity").
    """
    table = np.asarray(steps, dtype=np.int64).reshape(-1, 2)
    out = []
    for s, src in enumerate(sources):
        plan = src.plan
        never = len(table)  # a step index no step has
        step_of_batch = np.full(plan.num_batches, never, dtype=np.int64)
        mine = np.flatnonzero(table[:, 0] == s)
        step_of_batch[table[mine, 1]] = mine
        n = min(len(plan.order), plan.num_batches * plan.batch_size)  # drop_last: not the tail
        step_of_pos = np.repeat(step_of_batch, plan.batch_size)[:n]
        shard_of_pos = np.searchsorted(plan.shard_starts(), plan.order[:n], side="right") - 1
        first = np.full(len(plan.shards), never, dtype=np.int64)
        np.minimum.at(first, shard_of_pos, step_of_pos)
        out.append({int(i) for i in np.flatnonzero((first < never) & (first % workers == worker))})
    return out


@dataclass(frozen=True)
class BatchSource:
    """What a worker needs to know about one source (picklable)."""

    directory: ShardFolder
    name: str
    shard_names: list[str]  # stream order, per the plan
    shard_sha256: list[str]  # the manifest's digests, same order
    plan: RankPlan
    num_frames: int
    max_text_len: int


@dataclass
class PlannedBatches(IterableDataset):
    """Yields the plan's batches ``steps[w::W]`` in worker ``w`` (see the module docstring)."""

    sources: list[BatchSource]
    steps: list[tuple[int, int]]
    train: bool
    tokenizer: Any
    seed: int
    epoch: int
    image_size: int
    crop_scale: tuple[float, float] = TRAIN_SCALE
    hflip: bool = True
    verify_stream: bool = True  # hash shards as they stream (off only to measure its cost)
    hint: str = ""  # appended to shard errors (what the user can set)
    decode: bool = True  # False: batches carry packed JPEGs, decoded later (t2v2t.data.gpu_decode)
    # Evaluation frames: "project" (short side + centre crop, bilinear) or "vindlu" (the whole
    # frame squashed to a square, bicubic: docs/evaluation.md, "What `eval.preprocess=vindlu`
    # does").
    preprocess: str = "project"
    # The training crop's resampling: bicubic (VindLU's RandomResizedCrop) or bilinear.
    train_interp: str = "bilinear"
    clean_captions: bool = False  # training captions through VindLU's pre_text
    # Set by PlannedLoader before its workers start: they write frames into it (FramePool).
    pool: FramePool | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        try:
            yield from self._batches(info)
        except (ShardError, StorageError) as err:  # a shard, or a store that kept failing
            if info is None:
                raise
            # DataLoader would re-raise a worker's exception wrapped in its traceback text;
            # the message travels as data instead and PlannedLoader raises it as it was.
            yield {_WORKER_ERROR: str(err)}

    def _batches(self, info: Any) -> Iterator[dict[str, Any]]:
        w, num = (info.id, info.num_workers) if info is not None else (0, 1)
        mine = self.steps[w::num]
        needed = [Counter() for _ in self.sources]
        for s, b in mine:
            needed[s].update(int(p) for p in self.sources[s].plan.batch(b))
        hashed = shards_hashed_by(w, num, self.steps, self.sources) if num > 1 else None
        streams = [
            ShardStream(
                src.directory,
                src.shard_names,
                src.plan,
                needed[i],
                src.shard_sha256 if self.verify_stream else None,
                self.hint,
                hashed=None if hashed is None else hashed[i],
            )
            if needed[i]
            else None
            for i, src in enumerate(self.sources)
        ]
        try:
            for s, b in mine:
                yield self._batch(self.sources[s], b, streams[s])
            for st in streams:  # a shard this worker left mid-way is verified too
                if st is not None:
                    st.close(verify=True)
        finally:
            for st in streams:
                if st is not None:
                    st.close()

    def _batch(self, src: BatchSource, b: int, stream: ShardStream) -> dict[str, Any]:
        positions = src.plan.batch(b)
        raws = stream.take(positions)
        size, t = self.image_size, src.num_frames
        shape = (len(raws), t, size, size, 3) if self.decode else (0, 0, 0, 0, 0)
        worker, slot = get_worker_info(), None
        if worker is not None and self.pool is not None and self.decode:
            # Into one of this worker's reused shared buffers (t2v2t.data.frame_pool).
            frames, slot = self.pool.take(worker.id, shape)
        else:
            frames = torch.empty(shape, dtype=torch.uint8)
            if worker is not None:  # born in shared memory: no copy to hand it over
                frames.share_memory_()
        buf = frames.numpy()
        index = np.empty((len(raws), t), dtype=np.int64)
        keys, texts = [], []
        seed, epoch = (self.seed, self.epoch) if self.train else (0, 0)
        # Two passes: all the per-sample Python (metadata, frame choice, crop draw) first, then
        # the decodes back to back. Interleaved, each decode evicts the interpreter's working set
        # from the caches and the small Python steps ran several times slower (measured).
        todo: list[tuple[list[bytes], Crop]] = []
        for i, raw in enumerate(raws):
            try:
                meta, jpegs, crop = self._prepare(raw, t, seed, epoch, index[i])
            except (ValueError, KeyError) as err:
                raise self._error(src, positions[i], raw, err) from None
            todo.append((jpegs, crop))
            keys.append(meta.key)
            if self.train:
                texts.append(self._caption(src, meta, int(positions[i]), seed, epoch))
            else:  # evaluation reads every caption in the same pass as the frames
                texts.append(list(meta.captions))
        batch: dict[str, Any] = {
            "frames": frames.permute(0, 1, 4, 2, 3),
            "keys": keys,
            "frame_indices": torch.from_numpy(index),
            "source": src.name,
        }
        if self.train:
            batch["video_ids"] = torch.tensor([video_id(k) for k in keys], dtype=torch.long)
            batch["texts"] = texts
            if self.tokenizer is not None:
                ids, mask = tokenize(self.tokenizer, texts, src.max_text_len)
                batch["input_ids"], batch["attention_mask"] = ids, mask
        else:
            batch["index"] = torch.as_tensor(positions, dtype=torch.long)
            batch["captions"] = texts
        if not self.decode:  # the frames are decoded on the training device (t2v2t.data.gpu_decode)
            del batch["frames"]
            batch["jpeg_data"], batch["jpeg_offsets"] = pack_jpegs([j for j, _ in todo])
            batch.update(crops=[c for _, c in todo], frame_size=size, num_frames=t)
            return batch
        squash = not self.train and self.preprocess == "vindlu"
        interp = "bicubic" if squash else (self.train_interp if self.train else "bilinear")
        for i, (jpegs, crop) in enumerate(todo):  # fills batch["frames"]
            try:
                decode_jpegs(jpegs, crop, size, buf[i], keys[i], interp)
            except ValueError as err:
                raise self._error(src, positions[i], raws[i], err) from None
        if slot is not None:  # the main process copies the frames out of the pool
            pooled(batch, slot)
        return batch

    def _caption(
        self, src: BatchSource, meta: SampleMeta, position: int, seed: int, epoch: int
    ) -> str:
        """A training sample's caption: its pass's (a per-caption epoch) or the epoch's one,
        cleaned by VindLU's ``pre_text`` when ``clean_captions``."""
        if src.plan.passes:
            j = src.plan.pass_of(position)
            text = caption_in_pass(meta.captions, seed, epoch, meta.key, j)
        else:
            text = choose_caption(meta.captions, seed, epoch, meta.key)
        return pre_text(text) if self.clean_captions else text

    def _error(
        self, src: BatchSource, position: Any, raw: dict[str, Any], err: Exception
    ) -> ShardError:
        i = src.plan.locate(int(position))[0]
        name = src.shard_names[i]
        path = src.directory.join(name)
        if self.verify_stream and not shard_matches(src.directory, name, src.shard_sha256[i]):
            return ShardError(corrupt_message(path) + self.hint)  # the cause, not the symptom
        return ShardError(f"{path}: sample {raw.get('__key__')!r}: {err}")

    def _prepare(
        self, raw: dict[str, Any], num_frames: int, seed: int, epoch: int, index_out: np.ndarray
    ) -> tuple[SampleMeta, list[bytes], Crop]:
        """One sample's metadata, the JPEGs of its chosen frames and its crop (no decoding).

        The chosen frames' original indices go into ``index_out``.
        """
        if META_EXT not in raw:
            raise ValueError(f"no .{META_EXT} member")
        meta = SampleMeta.from_json(raw[META_EXT])
        pos, idx = pick_frames(meta, num_frames, seed, epoch)
        h, w = meta.size
        crop: Crop = (
            train_crop(h, w, seed, epoch, meta.key, self.crop_scale, self.hflip)
            if self.train
            else (full_frame(h, w) if self.preprocess == "vindlu" else center_crop(h, w))
        )
        try:
            jpegs = [raw[frame_ext(p)] for p in pos]
        except KeyError as err:
            raise ValueError(f"lacks member {err.args[0]}") from None
        index_out[:] = idx
        return meta, jpegs, crop


_WORKER_ERROR = "__shard_error__"


@dataclass(eq=False)
class PlannedLoader:
    """An epoch's batches; ``len()`` is the epoch's batch count (the same on every rank).

    Iterating yields the batches after ``skip_batches`` (resume). ``batch_sizes``: one per
    batch of the epoch; ``skipped_shards``: one message per shard left out of the plan.
    """

    dataset: PlannedBatches
    _: KW_ONLY
    skip_batches: int
    batch_sizes: list[int]
    num_workers: int
    pin_memory: bool
    skipped_shards: list[str]
    loader_seed: int = 0  # the DataLoader generator's seed (docs/reliability.md, "Exact resume")
    decode_device: str | None = None  # set: JPEGs decoded there (t2v2t.data.gpu_decode)
    _ahead: Iterator[dict[str, Any]] | None = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return self.num_batches

    @property
    def num_batches(self) -> int:
        """Batches in the whole epoch on this rank (skipped ones included)."""
        return len(self.batch_sizes)

    @property
    def num_samples(self) -> int:
        """Samples this rank yields in the whole epoch (padding included)."""
        return sum(self.batch_sizes)

    def start(self) -> PlannedLoader:
        """Start the workers now (they begin prefetching); the next ``iter()`` continues them.

        The trainer starts the next epoch's loader before this epoch ends, so its first batch is
        ready when the epoch turns (docs/training.md, "Epoch boundaries"); the batches are the
        ones a later start gives (same plan, same ``loader_seed``).
        """
        if self._ahead is None:
            self._ahead = self._start()
        return self

    def __iter__(self) -> Iterator[dict[str, Any]]:
        started, self._ahead = self._ahead, None
        return started if started is not None else self._start()

    def _start(self) -> Iterator[dict[str, Any]]:
        if self.decode_device is not None:
            return decode_on_device(self._iter_batches(), self.decode_device)
        return self._iter_batches()

    def _iter_batches(self) -> Iterator[dict[str, Any]]:
        if self.num_workers == 0 and not self.pin_memory:
            return iter(self.dataset)
        pool = None
        if self.num_workers > 0 and self.dataset.decode:
            pool = FramePool(self.num_workers, self._slot_bytes())
        self.dataset.pool = pool
        loader = DataLoader(
            self.dataset,
            batch_size=None,  # the dataset yields whole batches
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            prefetch_factor=2 if self.num_workers else None,
            # Starting an iterator draws the workers' base seed from this generator; without
            # it the draw comes from torch's global stream, which a resumed run restores one
            # draw earlier than the uninterrupted run had it (docs/reliability.md, "Exact resume").
            generator=torch.Generator().manual_seed(self.loader_seed),
            # Out of the trainer's process group: a stop signal sent to that group would kill
            # them before the trainer checkpoints (docs/reliability.md, "Preemption").
            worker_init_fn=own_process_group,
        )
        batches = _raise_worker_errors(iter(loader))  # the workers start (fork) here
        self.dataset.pool = None  # theirs now; the main process keeps its own reference below
        return batches if pool is None else frames_from_pool(batches, pool)

    def _slot_bytes(self) -> int:
        """The largest batch's frames in bytes: a :class:`FramePool` slot's size."""
        size = self.dataset.image_size
        return max(s.plan.batch_size * s.num_frames for s in self.dataset.sources) * size * size * 3


def _raise_worker_errors(batches: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for batch in batches:
        if _WORKER_ERROR in batch:
            raise ShardError(batch[_WORKER_ERROR])
        yield batch
