"""Shard files: naming, deterministic tar+zstd writing, streaming reads, manifests.

The only place that knows how a shard is laid out on disk. Files appear
under their final name only when complete: written to a temporary name, fsynced, renamed.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from t2v2t import storage
from t2v2t.atomic import atomic_write_bytes, fsync_dir
from t2v2t.data.cache import node_cache
from t2v2t.data.integrity import HashingReader, ShardError, sha256_file
from t2v2t.data.schema import FORMAT, META_EXT
from t2v2t.data.tarstream import group_members, iter_shard_samples
from t2v2t.storage import ShardFolder

MANIFEST = "manifest.json"
FAILURES = "failures.jsonl"
SHARD_SUFFIX = ".tar.zst"
ZSTD_LEVEL = 3


def shard_dir(root: str | Path, dataset: str, split: str, num_frames: int) -> Path:
    """``<root>/<dataset>/<split>_<N>f``; a URL root (``s3://...``) gives a URL string."""
    if "://" in str(root):
        return f"{str(root).rstrip('/')}/{dataset}/{split}_{num_frames}f"  # type: ignore[return-value]
    return Path(root) / dataset / f"{split}_{num_frames}f"


def shard_name(dataset: str, split: str, index: int) -> str:
    return f"{dataset}-{split}-{index:06d}{SHARD_SUFFIX}"


@dataclass(frozen=True)
class ShardInfo:
    """A manifest's entry for one shard. ``captions``: the shard's (video, caption) pairs (None:
    written before they were counted); ``caption_counts``: each sample's caption count, only
    where some sample has more than one (per-caption epochs plan from them, docs/training.md)."""

    name: str
    samples: int
    bytes: int
    sha256: str
    captions: int | None = None
    caption_counts: list[int] | None = None


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    # Fixed owner, mode and mtime: the same members always give the same bytes.
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_shard(path: str | Path, samples: Iterable[list[tuple[str, bytes]]]) -> ShardInfo:
    """Write samples (each a list of tar members) as one zstd-compressed tar, atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    caption_counts: list[int] = []
    try:
        with open(tmp, "wb") as raw:
            # The frame checksum lets zstd itself reject damaged bytes (docs/reliability.md,
            # "Shard integrity").
            cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=0, write_checksum=True)
            with cctx.stream_writer(raw, closefd=False) as zout:
                with tarfile.open(fileobj=zout, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
                    for members in samples:
                        for name, data in members:
                            tar.addfile(_tar_info(name, len(data)), io.BytesIO(data))
                        caption_counts.append(_caption_count(members))
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()
    count, total = len(caption_counts), sum(caption_counts)
    per_sample = caption_counts if total != count else None  # all ones: nothing to record
    return ShardInfo(path.name, count, path.stat().st_size, sha256_file(path), total, per_sample)


def _caption_count(members: list[tuple[str, bytes]]) -> int:
    """How many captions a sample's metadata member lists (1 when it lists none)."""
    for name, data in members:
        if name.endswith(f".{META_EXT}"):
            try:
                captions = json.loads(data).get("captions")
            except (ValueError, AttributeError):
                return 1
            return max(1, len(captions)) if isinstance(captions, list) else 1
    return 1


def open_shard(
    directory: ShardFolder | str | Path, name: str, sha256: str | None = None, hashed: bool = True
) -> HashingReader | BinaryIO:
    """Shard ``name`` of ``directory``, opened for reading its compressed bytes front to back.

    The one place shard bytes are opened (the loaders, evaluation, reports, the checks), so that
    where they come from is decided here. With ``sha256`` (the manifest's) the file is a
    :class:`HashingReader`: what is read goes into a digest that ``verify()`` checks
    (docs/reliability.md, "Shard integrity"). The caller closes it. A URL folder's shards come
    through this node's cache (:func:`open_shard_url`). ``hashed=False``: the same bytes (a URL's
    checked cached copy) without the digest, for a reader whose shard another one hashes.
    """
    folder = ShardFolder.of(directory)
    if folder.remote:
        if sha256 is not None and not hashed:
            return node_cache().open(str(folder.join(name)), sha256)
        return open_shard_url(str(folder.join(name)), sha256)
    path = folder.join(name)
    if sha256 is None or not hashed:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    return HashingReader(path, sha256)


def has_frame_checksum(file: BinaryIO) -> bool:
    """Whether the zstd frame starting at ``file``'s current position carries a content checksum
    (builder version 3 on); the position is left where it was."""
    start = file.tell()
    head = file.read(18)  # magic + the longest frame header
    file.seek(start)
    try:
        return bool(zstandard.get_frame_parameters(head).has_checksum)
    except zstandard.ZstdError:
        return False


def open_shard_url(url: str, sha256: str | None) -> HashingReader | BinaryIO:
    """A shard at a URL: a checked copy in the node cache (:mod:`t2v2t.data.cache`), hashed
    again as it streams; without the manifest's digest, the object itself, unchecked."""
    if sha256 is None:
        return storage.open_read(url)  # nothing to check a cached copy against
    return HashingReader(url, sha256, file=node_cache().open(url, sha256))


def read_shard(
    directory: ShardFolder | str | Path,
    name: str,
    sha256: str | None = None,
    keep: Callable[[int], bool] | None = None,
) -> Iterator[dict[str, Any]]:
    """The samples of shard ``name`` through the lean reader, the file closed after.

    ``sha256``: verify the digest on the way (:func:`open_shard`); ``keep``: as
    :func:`t2v2t.data.tarstream.iter_shard_samples`.
    """
    with open_shard(directory, name, sha256) as f:
        yield from iter_shard_samples(f, keep)


def shard_matches(directory: ShardFolder | str | Path, name: str, sha256: str) -> bool:
    """True when the whole of shard ``name`` has the manifest's ``sha256``."""
    with open_shard(directory, name, sha256) as f:
        return f.matches()  # type: ignore[attr-defined]


def open_zstd(path: str | Path) -> BinaryIO:
    """A readable decompressed stream of a ``.tar.zst`` file (also a webdataset opener)."""
    path = Path(path)
    fh = open_shard(path.parent, path.name)
    return zstandard.ZstdDecompressor().stream_reader(fh, closefd=True)


def iter_members(path: str | Path) -> Iterator[tuple[str, bytes]]:
    """Stream ``(member name, bytes)`` out of a shard without unpacking it (``tarfile``)."""
    with open_zstd(path) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for info in tar:
            if info.isfile():
                yield info.name, tar.extractfile(info).read()


def iter_samples(path: str | Path) -> Iterator[dict[str, Any]]:
    """A shard's samples through ``tarfile``: ``{"__key__", "json", "000.jpg", ...}``.

    The reference reader (verification, tests); the loaders use the lean
    :func:`t2v2t.data.tarstream.iter_shard_samples`, which yields the same dicts.
    """
    return group_members(iter_members(path))


def write_manifest(directory: str | Path, manifest: dict[str, Any]) -> None:
    data = json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_bytes(Path(directory) / MANIFEST, data.encode())


def read_manifest(directory: ShardFolder | str | Path) -> dict[str, Any]:
    """The manifest of a shard folder or URL, with a clear error when it is missing or not ours."""
    folder = ShardFolder.of(directory)
    path = folder.join(MANIFEST)
    try:
        with folder.open(MANIFEST) as f:
            text = f.read().decode()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ShardError(
            f"{path} not found: {folder} is not a finished shard folder "
            "(build it with `make shards DATASET=...`)"
        ) from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as err:
        raise ShardError(f"{path}: not valid JSON ({err}); rebuild the folder") from None
    if manifest.get("format") != FORMAT:
        raise ShardError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def shard_infos(manifest: dict[str, Any]) -> list[ShardInfo]:
    return [ShardInfo(**s) for s in manifest["shards"]]


def check_shard_file(
    directory: ShardFolder | str | Path,
    info: ShardInfo,
    *,
    hash_check: bool = True,
    listing: dict[str, int] | None = None,
) -> None:
    """Raise :class:`ShardError` naming the shard when its size or sha256 disagrees with the manifest.

    ``directory`` may be a URL; ``listing`` (its :meth:`~t2v2t.storage.ShardFolder.list_sizes`)
    saves one request per shard when many are checked (a shard it lacks is asked for by name).
    """
    folder = ShardFolder.of(directory)
    path = folder.join(info.name)
    if folder.remote:
        sizes = folder.list_sizes() if listing is None else listing
        size = sizes.get(info.name)
        if size is None:  # not listed (a store that cannot list): one request for it
            try:
                size = storage.size(path)
            except FileNotFoundError:
                size = None
    else:
        size = Path(path).stat().st_size if Path(path).is_file() else None
    if size is None:
        raise ShardError(f"{path}: listed in the manifest but missing")
    if size != info.bytes:
        raise ShardError(
            f"{path}: {size} bytes, manifest says {info.bytes} (truncated or replaced)"
        )
    if hash_check and not shard_matches(folder, info.name, info.sha256):
        raise ShardError(f"{path}: sha256 differs from the manifest (corrupted or replaced)")


def info_dict(info: ShardInfo) -> dict[str, Any]:
    """The manifest entry of a shard (``caption_counts`` only when recorded)."""
    d = asdict(info)
    if d["caption_counts"] is None:
        del d["caption_counts"]
    return d


def warn_if_synthetic(dirs: Iterable[str | Path], what: str) -> bool:
    """Print one warning line (rank 0 only) when any of ``dirs`` holds synthetic shards."""
    synthetic = []
    for d in dirs:
        try:
            if read_manifest(d).get("synthetic"):
                synthetic.append(str(d))
        except (OSError, ShardError, ValueError):
            continue  # the caller's own checks report unreadable folders
    if synthetic and os.environ.get("RANK", "0") == "0":
        print(
            f"warning: {what} reads synthetic shards ({', '.join(synthetic)}): "
            "its figures say nothing about real videos",
            file=sys.stderr,
            flush=True,
        )
    return bool(synthetic)
