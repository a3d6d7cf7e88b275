"""Streaming shard loader: deterministic, resumable, worker-count independent.

How an epoch is made (see :mod:`t2v2t.data.plan` for the pure part):

1. Shards are listed from ``manifest.json`` and checked against it (size always; sha256 with
   ``verify_hash=True``, once per shard per process). A bad shard is a :class:`ShardError` naming
   it, or with ``skip_bad_shards=True`` it leaves the plan with one counted warning.
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
appears exactly once across ranks. Mixed sources alternate batches in VindLU's MetaLoader way (a seeded permutation of the
sources' batches, identical on every rank).

Resume: ``skip_samples`` counts the samples *this rank* has already consumed in the epoch (the sum
of ``len(batch["keys"])``); it must fall on a batch boundary, and the loader then yields exactly
the batches the uninterrupted run would have yielded next (skipped batches are not decoded).

``frames`` come out as a ``[B, T, 3, S, S]`` uint8 view over channels-last (``[B, T, S, S, 3]``)
memory: that layout is what the decoder and the resize write without a transpose.
:func:`normalize` (on the device) returns a contiguous float tensor.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import zstandard
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from t2v2t import storage
from t2v2t.data.augment import (
    TRAIN_SCALE,
    Crop,
    center_crop,
    decode_jpegs,
    full_frame,
    normalize,
    train_crop,
)
from t2v2t.data.captions import SENTENCE_LEN, choose_caption, tokenize, video_id
from t2v2t.data.frames import choose_candidates, subsample_segments
from t2v2t.data.gpu_decode import decode_on_device, pack_jpegs
from t2v2t.data.plan import RankPlan, interleave, train_plan
from t2v2t.data.schema import META_EXT, SampleMeta, frame_ext
from t2v2t.data.shards import (
    HashingReader,
    ShardError,
    ShardInfo,
    check_shard_file,
    corrupt_message,
    open_shard,
    read_manifest,
    shard_infos,
    shard_matches,
)
from t2v2t.data.tarstream import iter_shard_samples
from t2v2t.seeding import rng_for
from t2v2t.storage import Location

__all__ = [
    "PlannedLoader",
    "ShardWarning",
    "TrainSource",
    "make_train_loader",
    "normalize",
    "pick_frames",
]

log = logging.getLogger(__name__)
DEFAULT_SHUFFLE_BUFFER = 1000


class ShardWarning(UserWarning):
    """A shard was skipped (``skip_bad_shards=True``)."""


@dataclass(frozen=True)
class TrainSource:
    """One training corpus: its shard folder and per-corpus batch size, frames and text length."""

    dir: str | Path
    batch_size: int
    num_frames: int
    max_text_len: int = SENTENCE_LEN


# --------------------------------------------------------------------------- shard checks

# The shards whose sha256 this process already verified (see _hash_token).
_HASHED: set[tuple[str, int, int | str]] = set()


def _check_shards(
    directory: Location,
    infos: list[ShardInfo],
    *,
    skip_bad: bool,
    verify_hash: bool,
    hint: str = "",
) -> tuple[list[ShardInfo], list[str]]:
    """The shards that pass their manifest check, and one message per skipped shard."""
    good, bad = [], []
    # A URL folder: every size from one listing of the store, not a request per shard.
    listing = storage.list_sizes(directory) if storage.is_url(directory) else None
    for info in infos:
        try:
            # size: always, it is a stat (or a listing)
            check_shard_file(directory, info, hash_check=False, listing=listing)
            if verify_hash:
                token = _hash_token(directory, info)
                if token not in _HASHED:
                    check_shard_file(directory, info, hash_check=True, listing=listing)
                    _HASHED.add(token)
        except ShardError as err:
            if not skip_bad:
                raise ShardError(f"{err}{hint}") from None
            bad.append(str(err))
            continue
        good.append(info)
    if bad:
        msg = f"{directory}: skipped {len(bad)} of {len(infos)} shards: " + "; ".join(bad)
        log.warning(msg)
        warnings.warn(msg, ShardWarning, stacklevel=3)
    return good, bad


def _hash_token(directory: Location, info: ShardInfo) -> tuple[str, int, int | str]:
    """What identifies a shard whose digest was checked: a file's path, size and mtime; a URL's
    manifest entry (its node-cache copy is checked by the cache)."""
    if storage.is_url(directory):
        return (str(storage.join(directory, info.name)), info.bytes, info.sha256)
    st = (Path(directory) / info.name).stat()
    return (str(Path(directory) / info.name), st.st_size, st.st_mtime_ns)


# --------------------------------------------------------------------------- streaming


class _Stream:
    """Streams one rank's shards in plan order, keeping only the positions one worker needs.

    ``needed`` maps stream position -> how many times this worker's batches use it (padding can
    repeat a sample); a sample is dropped from memory after its last use. Shards holding nothing
    needed are never opened, which also makes resuming cheap.
    """

    def __init__(
        self,
        directory: Location,
        names: list[str],
        plan: RankPlan,
        needed: Counter,
        sha256s: list[str] | None = None,
        hint: str = "",
    ) -> None:
        self.directory = directory
        self.names = names  # stream-order shard names
        self.sha256s = sha256s  # stream order; None: no digest check (benchmark baseline)
        self.hint = hint
        self.file: HashingReader | BinaryIO | None = None  # the open shard's bytes
        self.check: HashingReader | None = None  # the same file when it is being hashed
        self.counts = plan.counts
        self.starts = plan.shard_starts()
        self.refs = dict(needed)
        self.wanted = np.array(sorted(needed), dtype=np.int64)
        self.pending: dict[int, dict[str, Any]] = {}
        self.pos = 0  # next stream position the open shard yields
        self.shard = -1
        self.it: Iterator[dict[str, Any]] | None = None

    def take(self, positions: Sequence[int]) -> list[dict[str, Any]]:
        out = []
        for p in (int(x) for x in positions):
            if p not in self.pending:
                self._read_until(p)
            out.append(self.pending[p])
            self.refs[p] -= 1
            if self.refs[p] == 0:
                del self.pending[p]
        return out

    def _open_for(self, target: int) -> None:
        """Open the shard holding the next wanted position >= ``target``."""
        i = int(np.searchsorted(self.wanted, target))
        nxt = int(self.wanted[i])
        self.shard = int(np.searchsorted(self.starts, nxt, side="right") - 1)
        start = self.pos = int(self.starts[self.shard])
        # Every opened shard is hashed as it streams and verified when left (README.md,
        # "Integrity"); the bytes of the samples other workers need still pass through.
        sha256 = None if self.sha256s is None else self.sha256s[self.shard]
        self.file = open_shard(self.directory, self.names[self.shard], sha256)
        self.check = self.file if sha256 is not None else None  # type: ignore[assignment]
        self.it = iter_shard_samples(self.file, keep=lambda i: self.refs.get(start + i, 0) > 0)

    def _read_until(self, p: int) -> None:
        while p not in self.pending:
            if p < self.pos:
                raise RuntimeError(f"stream position {p} was needed after it was released")
            if self.it is None or self._next_wanted() >= int(self.starts[self.shard + 1]):
                self._close(verify=True)  # nothing more wanted here: jump to the next useful one
                self._open_for(self.pos)
            path = storage.join(self.directory, self.names[self.shard])
            index = self.pos - int(self.starts[self.shard])
            try:
                sample = next(self.it)
            except ShardError as err:
                raise ShardError(f"{err}{self.hint}") from None
            except StopIteration:
                self._raise_if_corrupt()
                raise ShardError(
                    f"{path}: ended after {index} samples, the manifest says "
                    f"{self.counts[self.shard]} (truncated? rebuild it)"
                ) from None
            except (EOFError, OSError, ValueError, zstandard.ZstdError) as err:
                self._raise_if_corrupt()
                raise ShardError(
                    f"{path}: unreadable at sample {index} ({type(err).__name__}: {err}); "
                    "the file is corrupted, rebuild it"
                ) from err
            if self.refs.get(self.pos, 0) > 0:
                self.pending[self.pos] = sample
            self.pos += 1
            if self.pos >= int(self.starts[self.shard + 1]):
                self._close(verify=True)

    def _next_wanted(self) -> int:
        i = int(np.searchsorted(self.wanted, self.pos))
        return int(self.wanted[i]) if i < len(self.wanted) else 1 << 62

    def _raise_if_corrupt(self) -> None:
        if self.check is not None and not self.check.matches():
            raise ShardError(corrupt_message(self.check.path) + self.hint) from None

    def _close(self, verify: bool = False) -> None:
        """Leave the open shard; ``verify``: check its sha256 first (the rest is hashed)."""
        check, self.check = self.check, None
        file, self.file = self.file, None
        try:
            if verify and check is not None and self.it is not None:
                check.verify(self.hint)
        finally:
            if self.it is not None:
                self.it.close()  # type: ignore[attr-defined]
            self.it = None
            if file is not None:
                file.close()


# --------------------------------------------------------------------------- batches


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


@dataclass(frozen=True)
class _Source:
    """What a worker needs to know about one source (picklable)."""

    directory: Location
    name: str
    shard_names: list[str]  # stream order, per the plan
    shard_sha256: list[str]  # the manifest's digests, same order
    plan: RankPlan
    num_frames: int
    max_text_len: int


@dataclass
class _PlannedBatches(IterableDataset):
    """Yields the plan's batches ``steps[w::W]`` in worker ``w`` (see the module docstring)."""

    sources: list[_Source]
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
    # frame squashed to a square, bicubic: README.md, "Reproduce the paper's tables ...").
    preprocess: str = "project"

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        try:
            yield from self._batches(info)
        except ShardError as err:
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
        streams = [
            _Stream(
                src.directory,
                src.shard_names,
                src.plan,
                needed[i],
                src.shard_sha256 if self.verify_stream else None,
                self.hint,
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
                    st._close(verify=True)
        finally:
            for st in streams:
                if st is not None:
                    st._close()

    def _batch(self, src: _Source, b: int, stream: _Stream) -> dict[str, Any]:
        positions = src.plan.batch(b)
        raws = stream.take(positions)
        size, t = self.image_size, src.num_frames
        shape = (len(raws), t, size, size, 3) if self.decode else (0, 0, 0, 0, 0)
        frames = torch.empty(shape, dtype=torch.uint8)
        if get_worker_info() is not None:
            # Born in shared memory: handing the batch to the main process then costs no copy.
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
                texts.append(choose_caption(meta.captions, seed, epoch, meta.key))
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
        interp = "bicubic" if squash else "bilinear"
        for i, (jpegs, crop) in enumerate(todo):  # fills batch["frames"]
            try:
                decode_jpegs(jpegs, crop, size, buf[i], keys[i], interp)
            except ValueError as err:
                raise self._error(src, positions[i], raws[i], err) from None
        return batch

    def _error(
        self, src: _Source, position: Any, raw: dict[str, Any], err: Exception
    ) -> ShardError:
        i = src.plan.locate(int(position))[0]
        name = src.shard_names[i]
        path = storage.join(src.directory, name)
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

    dataset: _PlannedBatches
    _: KW_ONLY
    skip_batches: int
    batch_sizes: list[int]
    num_workers: int
    pin_memory: bool
    skipped_shards: list[str]
    loader_seed: int = 0  # the DataLoader generator's seed (README.md, "Exact resume")
    decode_device: str | None = None  # set: JPEGs decoded there (t2v2t.data.gpu_decode)

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

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.decode_device is not None:
            return decode_on_device(self._iter_batches(), self.decode_device)
        return self._iter_batches()

    def _iter_batches(self) -> Iterator[dict[str, Any]]:
        if self.num_workers == 0 and not self.pin_memory:
            return iter(self.dataset)
        loader = DataLoader(
            self.dataset,
            batch_size=None,  # the dataset yields whole batches
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            prefetch_factor=2 if self.num_workers else None,
            # Starting an iterator draws the workers' base seed from this generator; without
            # it the draw comes from torch's global stream, which a resumed run restores one
            # draw earlier than the uninterrupted run had it (README.md, "Exact resume").
            generator=torch.Generator().manual_seed(self.loader_seed),
        )
        return _raise_worker_errors(iter(loader))


def _raise_worker_errors(batches: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for batch in batches:
        if _WORKER_ERROR in batch:
            raise ShardError(batch[_WORKER_ERROR])
        yield batch


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
) -> PlannedLoader:
    """The training batches of one epoch on one rank (see the module docstring).

    ``tokenizer`` may be ``None`` (batches then carry ``texts`` but no ``input_ids``; used by
    ``scripts/inspect_stream.py``). ``skip_samples``: samples this rank already consumed.
    ``crop_scale``: the random resized crop's area range (fractions of the stored frame);
    ``hflip=False`` never mirrors (captions that say "left"/"right"); crops stay the same.
    ``decode_device`` (e.g. ``"cuda"``): decode the JPEGs there in batches instead of in the
    workers (:mod:`t2v2t.data.gpu_decode`); ``None`` = the workers decode on CPU.

    Integrity (README.md): every shard is hashed as it streams and checked against the
    manifest at its end. ``skip_bad_shards=True`` also hashes every shard up front (once per
    process while its size and mtime stay), so a bad shard leaves this epoch's plan before any
    batch exists: the same decision on every rank and for any worker count.
    """
    scale = _check_train_args(sources, crop_scale, rank, world_size)
    where = dict(seed=seed, epoch=epoch, rank=rank, world_size=world_size)
    verify = verify_hash or skip_bad_shards  # leaving a bad shard out needs its digest
    picked = [
        _train_source(i, spec, where, shuffle_buffer, skip_bad_shards, verify)
        for i, spec in enumerate(sources)
    ]
    resolved = [src for src, _ in picked]
    skipped = [msg for _, bad in picked for msg in bad]
    steps = interleave([s.plan.num_batches for s in resolved], seed, epoch)
    sizes = [len(resolved[s].plan.batch(b)) for s, b in steps]  # last batches may be short
    skip = _resolve_skip(skip_samples, sizes)
    dataset = _PlannedBatches(
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
    )
    return PlannedLoader(
        dataset,
        skip_batches=skip,
        batch_sizes=sizes,
        num_workers=num_workers,
        pin_memory=pin_memory,
        skipped_shards=skipped,
        loader_seed=_loader_seed(seed, epoch, rank, skip),
        decode_device=decode_device,
    )


def _check_train_args(
    sources: Sequence[TrainSource], crop_scale: Sequence[float], rank: int, world_size: int
) -> tuple[float, float]:
    """Refuse arguments no plan can be made from; the crop scale as a ``(min, max)`` pair."""
    if not sources:
        raise ValueError("make_train_loader needs at least one TrainSource")
    scale = tuple(float(x) for x in crop_scale)
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(
            f"crop_scale must be [min, max] with 0 < min <= max <= 1, got {list(crop_scale)}"
        )
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world_size {world_size}")
    return scale[0], scale[1]


def _train_source(
    index: int,
    spec: TrainSource,
    where: dict[str, int],
    shuffle_buffer: int,
    skip_bad: bool,
    verify_hash: bool,
) -> tuple[_Source, list[str]]:
    """One corpus's checked shards and this rank's plan over them; the skipped shards' messages.

    ``where``: the epoch's ``seed``, ``epoch``, ``rank`` and ``world_size``.
    """
    directory = storage.location(spec.dir)
    manifest = read_manifest(directory)
    good, bad = _check_shards(
        directory,
        shard_infos(manifest),
        skip_bad=skip_bad,
        verify_hash=verify_hash,
        hint=" (or pass skip_bad_shards=True to train without it)",
    )
    tag = f"{index}:{manifest.get('dataset')}/{manifest.get('split')}"
    counts = [s.samples for s in good]
    plan = train_plan(
        counts, batch_size=spec.batch_size, shuffle_buffer=shuffle_buffer, tag=tag, **where
    )
    source = _Source(
        directory=directory,
        name=str(manifest.get("dataset", storage.basename(directory))),
        shard_names=[good[s].name for s in plan.shards],
        shard_sha256=[good[s].sha256 for s in plan.shards],
        plan=plan,
        num_frames=spec.num_frames,
        max_text_len=spec.max_text_len,
    )
    return source, bad


def _loader_seed(seed: int, epoch: int, rank: int, skip: int) -> int:
    """The DataLoader generator's seed: a function of the position, never of torch's RNG."""
    return int(rng_for(seed, epoch, "loader", rank, skip).integers(2**62))
