"""The settings of one shard folder, defined once: :class:`ShardSpec`.

The builder's signature, each shard task, the manifest (written and read back) and
``scripts/build_shards.py`` all take this one frozen object, so a setting is named and checked
in one place. :meth:`ShardSpec.sized_by_bytes` turns a byte target (``SHARD_BYTES=``) into a
samples-per-shard count from the settings alone, so every shard stays a pure function of its
rows: byte-identical for any worker count and resumable (docs/data.md, "Shards at scale").
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields, replace
from typing import Any

from preprocessing.mixing import MIXINGS, block_rows
from t2v2t.data.frames import MIDDLE_MODES
from t2v2t.errors import UsageError

# Bumped whenever the builder's output bytes change for the same inputs (decoder, resizer,
# member layout): finished shards of an older builder are then rebuilt, not kept.
BUILDER_VERSION = 3  # 3: zstd frame checksums

# The settings a shard's bytes depend on (with its rows); the manifest keys of the same names.
CONTENT = (
    "dataset",
    "split",
    "num_frames",
    "mode",
    "candidates",
    "seed",
    "short_side",
    "jpeg_quality",
)

DEFAULT_SAMPLES_PER_SHARD = 64  # the demo's and the synthetic corpora's small shards
DEFAULT_SHARD_BYTES = 300 * 10**6  # real data: few, big shards (fewer files, long reads)


@dataclass(frozen=True)
class ShardSpec:
    """Everything that decides a shard folder's contents, and what the manifest records.

    ``samples_per_shard`` inputs per shard (and per task); ``shard_bytes`` the byte target it
    was derived from (``None``: the count was given). Evaluation modes use one candidate.
    """

    dataset: str
    split: str
    num_frames: int
    mode: str
    candidates: int
    seed: int = 0
    short_side: int = 224
    jpeg_quality: int = 90
    samples_per_shard: int = DEFAULT_SAMPLES_PER_SHARD
    shard_bytes: int | None = None
    synthetic: bool = False
    builder_version: int = BUILDER_VERSION
    # How rows are spread over shards: "blocks" (docs/data.md, "Mixing") or "none" (shard i holds
    # rows [i*n, (i+1)*n) of the annotation). The records a task gets say which rows it holds, so
    # its fingerprint follows; the manifest records it.
    mixing: str = "none"
    # Frames are sampled from the first max_seconds of each clip (DiDeMo: 30, VindLU's trimmed
    # videos); None = the whole clip. Part of the content when set (older folders: unset).
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise UsageError(
                f"frames per video must be >= 1 (FRAMES={self.num_frames}): e.g. FRAMES=4"
            )
        if self.samples_per_shard < 1:
            raise UsageError(
                f"samples per shard must be >= 1 (SHARD_SIZE={self.samples_per_shard})"
            )
        if self.mixing not in MIXINGS:
            raise UsageError(
                f"unknown mixing (MIXING={self.mixing}): choose one of {', '.join(MIXINGS)}"
            )
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise UsageError(
                f"max seconds per clip must be > 0 (MAX_SECONDS={self.max_seconds}); "
                "MAX_SECONDS=0 means the whole clip"
            )
        if self.mode in MIDDLE_MODES and self.candidates != 1:
            object.__setattr__(self, "candidates", 1)  # one frame per segment: no candidates

    def content(self) -> dict[str, Any]:
        """The settings a shard's bytes depend on (its fingerprint; manifest keys); the trim
        only when set, so folders built before it keep their fingerprint."""
        out = {name: getattr(self, name) for name in CONTENT}
        if self.max_seconds is not None:
            out["max_seconds"] = self.max_seconds
        return out

    def manifest_fields(self) -> dict[str, Any]:
        """The manifest's settings keys: :data:`CONTENT` plus how shards were sized."""
        return {
            **self.content(),
            "samples_per_shard": self.samples_per_shard,
            "shard_bytes": self.shard_bytes,
            "synthetic": bool(self.synthetic),
            "builder_version": self.builder_version,
            "mixing": self.mixing,
            **({"mixing_block_rows": block_rows(self.samples_per_shard)} if self.mixed else {}),
        }

    @property
    def mixed(self) -> bool:
        return self.mixing != "none"

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> ShardSpec:
        """The spec a manifest was built with (older manifests lack the sizing keys)."""
        missing = [k for k in CONTENT if k not in manifest]
        if missing:
            raise UsageError(f"manifest lacks {', '.join(missing)}: rebuild the shard folder")
        # Older builders did not record the count: the largest shard is the best lower bound.
        largest = max((s.get("samples", 0) for s in manifest.get("shards", [])), default=1)
        return cls(
            **{k: manifest[k] for k in CONTENT},
            samples_per_shard=manifest.get("samples_per_shard", max(largest, 1)),
            shard_bytes=manifest.get("shard_bytes"),
            synthetic=bool(manifest.get("synthetic", False)),
            builder_version=manifest.get("builder_version", 0),
            mixing=manifest.get("mixing", "none"),  # older manifests: annotation order
            max_seconds=manifest.get("max_seconds"),
        )

    def sized_by_bytes(self, target: int) -> ShardSpec:
        """This spec with as many samples per shard as :func:`sample_bytes` fit in ``target``."""
        if target < 1:
            raise UsageError(f"shard byte target must be > 0 (SHARD_BYTES={target})")
        count = max(1, target // sample_bytes(self))
        return replace(self, samples_per_shard=count, shard_bytes=target)


def spec_default(name: str) -> Any:
    """A field's default (the CLI's defaults come from here)."""
    return next(f.default for f in fields(ShardSpec) if f.name == name)


# JPEG bits per pixel by quality: q50-q95 measured with encode_jpeg on natural photos resized to
# a 224 short side (sklearn's china and flower, matplotlib's grace_hopper; the mean of the
# three), q1 and q100 extrapolated. Web video frames are usually softer than these photos, so
# real shards should come out at or a little below the target.
_BITS_PER_PIXEL = ((1, 0.3), (50, 1.0), (75, 1.45), (85, 1.95), (90, 2.45), (95, 3.5), (100, 7.0))
ASPECT = 16 / 9  # web video; a 4:3 or square input makes smaller frames, so smaller shards
TAR_MEMBER_BYTES = 512 + 256  # a tar header and, on average, half a block of padding
META_BYTES = 2048  # a sample's JSON member (captions, indices), with its tar header


def bits_per_pixel(quality: int) -> float:
    """Linear interpolation in :data:`_BITS_PER_PIXEL`."""
    q = min(max(quality, 1), 100)
    for (q0, b0), (q1, b1) in zip(_BITS_PER_PIXEL, _BITS_PER_PIXEL[1:], strict=False):
        if q <= q1:
            return b0 + (b1 - b0) * (q - q0) / (q1 - q0)
    return _BITS_PER_PIXEL[-1][1]


def sample_bytes(spec: ShardSpec) -> int:
    """Estimated bytes of one sample in a shard: its frames (segments x candidates) as JPEGs
    at the short side and quality, tar overhead, metadata. A function of the spec alone."""
    pixels = spec.short_side * round(spec.short_side * ASPECT)
    frame = math.ceil(pixels * bits_per_pixel(spec.jpeg_quality) / 8) + TAR_MEMBER_BYTES
    return spec.num_frames * spec.candidates * frame + META_BYTES


_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def parse_bytes(text: str) -> int:
    """``300MB``, ``1.5G``, ``512MiB`` or a plain count of bytes (``SHARD_BYTES=``)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(I?)B?\s*", str(text).upper())
    if not m:
        raise UsageError(
            f"not a size (SHARD_BYTES={text}): give bytes with an optional unit, e.g. 300MB"
        )
    number, unit, binary = m.groups()
    scale = 1024 ** ("KMGT".index(unit) + 1) if binary and unit else _UNITS[unit]
    value = int(float(number) * scale)
    if value < 1:
        raise UsageError(f"shard byte target must be > 0 (SHARD_BYTES={text})")
    return value
