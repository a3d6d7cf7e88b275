"""One shard task: its records -> decoded frames -> samples -> one ``.tar.zst`` file.

Runs inside a Dask worker (or in-process). Everything it writes depends only on the task, so
any worker produces the same bytes. A record that cannot be used becomes a failure
``{key, source, reason}``; the shard goes on without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preprocessing.decode import decode_frames, encode_jpeg
from preprocessing.records import VideoRecord
from preprocessing.remote import local_copy
from preprocessing.spec import ShardSpec
from t2v2t.data.frames import frame_indices
from t2v2t.data.schema import SampleMeta, encode_sample
from t2v2t.data.shards import info_dict, write_shard
from t2v2t.errors import on_path


@dataclass(frozen=True)
class ShardTask:
    """Shard ``index`` of a folder built with ``spec``: its final file and its records."""

    index: int
    path: str  # final shard file
    spec: ShardSpec
    records: list[VideoRecord]


def failure(record: VideoRecord, reason: str) -> dict[str, str]:
    return {"key": record.key, "source": record.source, "reason": reason}


def build_sample(
    task: ShardTask, rec: VideoRecord, warnings: list[str] | None = None
) -> list[tuple[str, bytes]]:
    """The tar members of one record; raises with a one-line reason when it cannot be used.

    ``warnings`` collects what was stored with a repair (fps measured from packet times).
    """
    spec = task.spec
    if rec.refused:  # never opened: the adapter refused the path
        raise ValueError(rec.refused)
    if not rec.captions:
        raise ValueError("no caption (empty or missing text)")
    segments: list[list[int]] = []

    def pick(vlen: int) -> list[int]:
        # The one sampling function decides; the decoder only learns vlen first.
        segments[:] = frame_indices(
            spec.num_frames,
            vlen,
            spec.mode,
            key=rec.key,
            seed=spec.seed,
            candidates=spec.candidates,
        )
        return [i for seg in segments for i in seg]

    with local_copy(rec.media) as media:  # media at a URL: a temporary local copy
        dec = decode_frames(
            media,
            pick,
            spec.short_side,
            is_image=rec.is_image,
            member=rec.member,
            max_seconds=spec.max_seconds,
        )
    if dec.fps_from_packets and warnings is not None:
        warnings.append(rec.key)
    if rec.is_image:
        pick(1)
        dec.frames = dec.frames * sum(len(s) for s in segments)
    meta = SampleMeta(
        key=rec.key,
        dataset=spec.dataset,
        split=spec.split,
        source=rec.source,
        captions=list(rec.captions),
        fps=round(dec.fps, 6),
        vlen=dec.vlen,
        duration=round(dec.duration, 6),
        frame_indices=segments,
        sampling={
            "mode": spec.mode,
            "num_frames": spec.num_frames,
            "candidates": spec.candidates,
            "seed": spec.seed,
            # sampled from the first max_seconds only (vlen, duration: the cut clip's)
            **({"max_seconds": spec.max_seconds} if spec.max_seconds is not None else {}),
        },
        size=[int(dec.frames[0].shape[0]), int(dec.frames[0].shape[1])],
        timestamps=rec.timestamps,
    )
    return encode_sample(meta, [encode_jpeg(f, spec.jpeg_quality) for f in dec.frames])


def run_shard_task(task: ShardTask) -> dict[str, Any]:
    """Write the task's shard; returns ``{"index", "info": ShardInfo dict, "failures": [...]}``."""
    failures: list[dict[str, str]] = []
    warned: list[str] = []

    def samples() -> Iterator[list[tuple[str, bytes]]]:
        for rec in task.records:
            try:
                members = build_sample(task, rec, warned)
            except Exception as err:  # noqa: BLE001 - any bad input is a failure, not a crash
                reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
                failures.append(failure(rec, f"{type(err).__name__}: {reason}"[:500]))
                continue
            yield members

    with on_path(task.path):
        info = write_shard(Path(task.path), samples())
    return {
        "index": task.index,
        "info": info_dict(info),
        "failures": failures,
        "fps_warnings": len(warned),
    }
