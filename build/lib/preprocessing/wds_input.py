"""webdataset tars as builder input: video2dataset's and img2dataset's output, read in slices.

Both tools write ``NNNNN.tar`` files holding, per sample, ``<key>.mp4`` (video2dataset) or
``<key>.jpg`` (img2dataset) with ``<key>.txt`` (the caption) and ``<key>.json`` (url, key,
status, ...), the members of one sample next to each other, plus sidecars ``NNNNN_stats.json``
and ``NNNNN.parquet`` beside each tar. The sidecars are not read: a tar's own member list is
what gets built, so a stats file that disagrees with its tar (an interrupted download) cannot
make samples disappear (docs/data.md, "webdataset tars (video2dataset, img2dataset)").

Like a WebVid CSV (:mod:`preprocessing.slices`), the tars are planned without holding their
records: the driver walks each tar's headers (seeking over the data) and yields one
:class:`TarSlice` (a byte range of whole samples of one tar) per ``rows`` samples; a worker reads
its slice's captions and points each record at its media member's bytes, which the decoder copies
to a temporary file (:func:`preprocessing.decode.decode_frames`). A sample without media, without
a caption, or whose media does not decode is a failure naming its tar and key.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from preprocessing.records import VideoRecord
from t2v2t.data.schema import safe_key

VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".mpg", ".mpeg", ".m4v")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp")
# Which media each dataset's samples hold (``wds``: either; a video wins over an image).
MEDIA = {"webvid": VIDEO_EXTS, "cc3m": IMAGE_EXTS, "wds": VIDEO_EXTS + IMAGE_EXTS}
LAYOUT = "NNNNN.tar (webdataset: <key>.mp4 or <key>.jpg + <key>.txt, video2dataset/img2dataset)"


class TarError(ValueError):
    """An input tar that cannot be read (truncated, not a tar): it names the file."""


@dataclass(frozen=True)
class TarSlice:
    """Samples ``first .. first + rows - 1`` of ``path``: the bytes ``[start, stop)``."""

    path: str
    start: int
    stop: int
    first: int
    rows: int


@dataclass(frozen=True)
class TarSource:
    """The ``*.tar`` files of ``folder`` (name order) read in slices, for ``adapter``'s media."""

    adapter: str
    root: str
    folder: str


def tar_folder(root: Path, split: str) -> Path:
    """``<root>/<split>/`` if it exists, else ``root`` (the cc3m convention)."""
    return root / split if (root / split).is_dir() else root


def list_tars(folder: Path) -> list[Path]:
    """The input tars of a folder, in name order (the order of the shards built from them)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix == ".tar" and p.is_file())


def split_name(name: str) -> tuple[str, str]:
    """``dir/key.ext.more`` -> (``dir/key``, ``.ext.more``): webdataset's key / extension rule."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    key = f"{head}/{stem}" if head else stem
    return key, dot + ext


def _members(tar: Path, start: int = 0) -> Iterator[tarfile.TarInfo]:
    """The regular-file members of ``tar`` from byte ``start``, headers only (data is skipped)."""
    try:
        with open(tar, "rb") as f:
            f.seek(start)
            with tarfile.open(fileobj=f, mode="r:") as tf:
                while (info := tf.next()) is not None:
                    tf.members = []  # tarfile keeps every header otherwise
                    if info.isfile():
                        yield info
                end = tf.offset
            # tarfile ends quietly at a header cut short: a whole tar ends with zero blocks.
            f.seek(end)
            tail = f.read(2 * tarfile.BLOCKSIZE)
            if len(tail) < 2 * tarfile.BLOCKSIZE or tail.strip(b"\0"):
                raise tarfile.ReadError(f"no end-of-archive marker at byte {end}: cut short")
    except (tarfile.TarError, EOFError) as err:
        raise TarError(
            f"{tar}: not a readable tar ({err}): re-download it or move it out of the folder"
        ) from None


def _groups(tar: Path, start: int = 0) -> Iterator[tuple[str, list[tarfile.TarInfo]]]:
    """Consecutive members sharing a key, as ``(key, members)`` (webdataset's grouping)."""
    key, group = None, []
    for info in _members(tar, start):
        k, _ = split_name(info.name)
        if group and k != key:
            yield key, group  # type: ignore[misc]
            group = []
        key = k
        group.append(info)
    if group:
        yield key, group  # type: ignore[misc]


def plan_tar_slices(source: TarSource, rows: int) -> Iterator[TarSlice]:
    """Slices of at most ``rows`` samples, never across two tars (a worker reads one tar)."""
    if rows < 1:
        raise ValueError(f"rows per slice must be >= 1, got {rows}")
    for tar in list_tars(Path(source.folder)):
        start, first, count, end = -1, 0, 0, 0
        for index, (_, group) in enumerate(_groups(tar)):
            if count == 0:
                start, first = group[0].offset, index
            count += 1
            end = group[-1].offset_data + group[-1].size
            if count == rows:
                yield TarSlice(str(tar), start, end, first, count)
                count = 0
        if count:
            yield TarSlice(str(tar), start, end, first, count)


def _read(tar: Path, info: tarfile.TarInfo) -> bytes:
    with open(tar, "rb") as f:
        f.seek(info.offset_data)
        return f.read(info.size)


def _record(source: TarSource, tar: Path, key: str, group: list[tarfile.TarInfo]) -> VideoRecord:
    """One sample: its media member (by the dataset's extensions), its ``.txt`` caption."""
    by_ext = {split_name(m.name)[1].lower(): m for m in group}
    exts = MEDIA[source.adapter]
    media = next((by_ext[e] for e in exts if e in by_ext), None)
    txt = by_ext.get(".txt")
    rel = tar.relative_to(source.root).as_posix()
    refused = None if media else f"no media member ({', '.join(exts)}) in {rel}"
    try:
        caption = _read(tar, txt).decode("utf-8").strip() if txt else ""
    except UnicodeDecodeError:
        caption, refused = "", refused or f"{txt.name} in {rel} is not UTF-8 text"
    if media is None or refused:
        return VideoRecord(
            key=safe_key(key),
            media=tar,
            source=f"{rel}/{media.name if media else key}",
            captions=[caption] if caption else [],
            refused=refused,
        )
    return VideoRecord(
        key=safe_key(key),
        media=tar,
        source=f"{rel}/{media.name}",
        captions=[caption] if caption else [],
        is_image=split_name(media.name)[1].lower() in IMAGE_EXTS,
        member=(media.offset_data, media.size),
    )


def tar_slice_records(source: TarSource, part: TarSlice) -> list[VideoRecord]:
    """The records of one slice (runs in a worker): the slice's ``rows`` samples of its tar."""
    tar = Path(part.path)
    records = []
    for key, group in _groups(tar, part.start):
        if group[0].offset >= part.stop:
            break
        records.append(_record(source, tar, key, group))
    if len(records) != part.rows:  # the tar changed since it was planned
        raise TarError(
            f"{tar}: {len(records)} samples from byte {part.start}, planned {part.rows}: "
            "the file changed during the build; re-run it"
        )
    return records


def tar_records(source: TarSource) -> list[VideoRecord]:
    """Every record of the source's tars (small sets and tests; the builder reads slices)."""
    return [
        rec for part in plan_tar_slices(source, 1 << 30) for rec in tar_slice_records(source, part)
    ]
