"""The one description of a shard sample, shared by writer and reader.

A sample is a group of tar members sharing a key: ``<key>.json`` (:class:`SampleMeta`) and
``<key>.000.jpg``, ``<key>.001.jpg``, ... in the order of ``frame_indices`` flattened.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT = "t2v2t-shards/1"
META_EXT = "json"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def safe_key(raw: str) -> str:
    """A tar- and WebDataset-safe key: no dots or slashes (they would split the key)."""
    key = _UNSAFE.sub("_", str(raw))
    if not key:
        raise ValueError(f"cannot make a key from {raw!r}")
    return key


def frame_ext(i: int) -> str:
    """The member suffix of the i-th stored frame (``000.jpg``)."""
    return f"{i:03d}.jpg"


@dataclass(frozen=True)
class SampleMeta:
    """What ``<key>.json`` holds."""

    key: str
    dataset: str
    split: str
    source: str  # path relative to the data root
    captions: list[str]
    fps: float
    vlen: int
    duration: float
    frame_indices: list[list[int]]  # per segment, its candidates
    sampling: dict[str, Any]  # {"mode", "num_frames", "candidates", "seed"}
    size: list[int]  # [h, w] of the stored frames
    timestamps: list[list[float]] | None = field(default=None)

    @property
    def num_stored(self) -> int:
        return sum(len(c) for c in self.frame_indices)

    def to_json(self) -> bytes:
        data = asdict(self)
        if data["timestamps"] is None:
            del data["timestamps"]
        # sort_keys + fixed separators: byte-identical shards from identical inputs.
        return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str | dict) -> SampleMeta:
        data = raw if isinstance(raw, dict) else json.loads(raw)
        known = set(cls.__dataclass_fields__)
        missing = [k for k in known if k not in data and k != "timestamps"]
        if missing:
            raise ValueError(f"sample metadata lacks {sorted(missing)} (key {data.get('key')!r})")
        return cls(**{k: v for k, v in data.items() if k in known})


def encode_sample(meta: SampleMeta, jpegs: list[bytes]) -> list[tuple[str, bytes]]:
    """Tar members ``(name, bytes)`` of one sample, metadata first."""
    if len(jpegs) != meta.num_stored:
        raise ValueError(
            f"sample {meta.key}: {len(jpegs)} frames given, frame_indices describe {meta.num_stored}"
        )
    members = [(f"{meta.key}.{META_EXT}", meta.to_json())]
    members += [(f"{meta.key}.{frame_ext(i)}", jpg) for i, jpg in enumerate(jpegs)]
    return members


def decode_sample(sample: dict[str, Any]) -> tuple[SampleMeta, list[bytes]]:
    """A WebDataset-style dict (``__key__``, ``json``, ``000.jpg``, ...) -> metadata and JPEG bytes."""
    key = sample.get("__key__", "?")
    if META_EXT not in sample:
        raise ValueError(f"sample {key} has no .{META_EXT} member")
    meta = SampleMeta.from_json(sample[META_EXT])
    try:
        jpegs = [sample[frame_ext(i)] for i in range(meta.num_stored)]
    except KeyError as err:
        raise ValueError(f"sample {key} lacks frame member {err.args[0]}") from None
    return meta, jpegs
