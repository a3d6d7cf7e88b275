"""Dataset adapters: each corpus's native annotation layout -> a list of :class:`VideoRecord`.

One small function per format (FORMATS.md shows each layout). Columns and keys are read by name
and extra ones are tolerated. A malformed annotation raises :class:`AnnotationError` naming the
file and the line or entry; a record that is merely unusable (empty caption, missing media) is
still returned so the builder lists it in ``failures.jsonl`` instead of dropping it silently.

Media paths are confined to the data root: one that leaves it once ``..`` is normalised (or is
absolute elsewhere) is refused with the reason "outside the data folder" and never opened.
Symbolic links inside the root are followed wherever they point (labs link video stores in);
the check is on the path as written, not on where links lead (docs/reliability.md, "Errors and
safety").
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from preprocessing import remote
from preprocessing.records import VideoRecord
from preprocessing.slices import CsvSource
from preprocessing.wds_input import (
    LAYOUT,
    MEDIA,
    TarSource,
    list_tars,
    tar_folder,
    tar_records,
)
from t2v2t.data.schema import safe_key
from t2v2t.errors import ExpectedError, UsageError
from t2v2t.storage import Location, is_url

VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".mpg", ".mpeg", ".m4v")


class AnnotationError(ExpectedError, ValueError):
    """An annotation file that does not have the layout its dataset's release has."""


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


OUTSIDE = "outside the data folder"


def is_inside(path: Path, root: Path) -> bool:
    """Whether ``path`` stays under ``root`` once ``..`` is normalised (links are not followed)."""
    if is_url(root):
        return remote.is_inside(path, root)
    full = os.path.normpath(os.path.abspath(path))
    base = os.path.normpath(os.path.abspath(root))
    return full == base or full.startswith(base.rstrip(os.sep) + os.sep)


def _record(
    root: Path,
    key: str,
    media: Path,
    captions: list[str],
    timestamps: list[list[float]] | None = None,
    is_image: bool = False,
) -> VideoRecord:
    inside = is_inside(media, root)
    if is_url(root):  # data in object storage (preprocessing/remote.py)
        source = remote.relative(media, root)
    else:
        source = _rel(media, root) if inside else media.as_posix()
    return VideoRecord(
        key=safe_key(key),
        media=media,
        source=source,
        captions=[c.strip() for c in captions if c and c.strip()],
        timestamps=timestamps,
        is_image=is_image,
        refused=None if inside else OUTSIDE,
    )


def _need(path: Path, what: str) -> Path:
    if not remote.is_file(path):
        raise FileNotFoundError(f"{path} not found ({what})")
    return path


def _read_csv(
    path: Path, required: tuple[str, ...], byte_range: tuple[int, int, int] | None = None
) -> list[tuple[int, dict[str, str]]]:
    """Rows of a headed CSV as ``(line number, row)``; a bad header or row names ``file:line``.

    ``byte_range``: ``(start, stop, first line)``, whole rows only (see
    :mod:`preprocessing.slices`): the header is read from the file's start, then only those bytes.
    """
    try:
        return _csv_rows(path, required, byte_range)
    except UnicodeDecodeError as err:
        raise AnnotationError(
            f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}): "
            "save it as UTF-8"
        ) from None
    except csv.Error as err:
        raise AnnotationError(f"{path}: not a readable CSV ({err})") from None


def _csv_rows(
    path: Path, required: tuple[str, ...], byte_range: tuple[int, int, int] | None = None
) -> list[tuple[int, dict[str, str]]]:
    with (
        remote.open_binary(_need(path, "annotation CSV")) as raw,
        io.TextIOWrapper(raw, encoding="utf-8", newline="") as f,
    ):
        reader = csv.reader(f)
        header = next(reader, [])
        missing = [c for c in required if c not in header]
        if missing:
            raise AnnotationError(
                f"{path}:1: header {header} lacks column(s) {missing}: the file needs the "
                f"columns {', '.join(required)}"
            )
        offset = 0
        if byte_range is not None:
            start, stop, first_line = byte_range
            f.buffer.seek(start)
            text = f.buffer.read(stop - start).decode("utf-8")
            reader = csv.reader(io.StringIO(text, newline=""))
            offset = first_line - 1
        rows = []
        for fields in reader:
            if not fields:  # a blank line
                continue
            line = reader.line_num + offset
            if len(fields) != len(header):
                raise AnnotationError(
                    f"{path}:{line}: row has {len(fields)} fields, header has "
                    f"{len(header)}: quote fields that hold commas"
                )
            rows.append((line, dict(zip(header, fields, strict=True))))
    return rows


def _read_json(path: Path) -> Any:
    try:
        return json.loads(_need(path, "annotation JSON").read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None


def _entry_error(path: Path, entry: Any, what: str) -> AnnotationError:
    return AnnotationError(f"{path}: entry {entry}: {what}")


def _find_video(folder: Path, stem: str, original: str | None = None) -> Path:
    """``folder/<stem>.mp4``, else the original file name, else any known video extension."""
    first = folder / f"{stem}.mp4"
    if first.exists():
        return first
    if original and (folder / original).exists():
        return folder / original
    for ext in VIDEO_EXTS:
        if (folder / f"{stem}{ext}").exists():
            return folder / f"{stem}{ext}"
    return first  # missing: the builder reports it as a failure


# --- WebVid ------------------------------------------------------------------------------------


def webvid_csv(root: Location, split: str) -> Location | None:
    """WebVid's annotation CSV of ``split``: ``results_2M_<split>.csv``, ``results_10M_<split>.csv``
    or, failing both, the one ``results_*_<split>.csv``."""
    for name in (f"results_2M_{split}.csv", f"results_10M_{split}.csv"):
        if remote.is_file(remote.join(root, name)):
            return remote.join(root, name)
    found = remote.glob(root, f"results_*_{split}.csv")
    if len(found) > 1:
        names = ", ".join(str(p).rsplit("/", 1)[-1] for p in found)
        raise UsageError(
            f"several WebVid CSVs for {split} in {root} ({names}): name one with ANNOTATIONS="
        )
    return found[0] if found else None


WEBVID_COLUMNS = ("videoid", "page_dir", "name")


def webvid_record(root: Location, path: Location, line: int, row: dict[str, str]) -> VideoRecord:
    """One WebVid CSV row -> its record (``videos/<page_dir>/<videoid>.mp4``)."""
    vid, page = row["videoid"].strip(), row["page_dir"].strip()
    if not vid or not page:
        raise AnnotationError(f"{path}:{line}: empty videoid or page_dir ({row})")
    media = remote.join(root, "videos", page, f"{vid}.mp4")
    return _record(root, vid, media, [row["name"]])


def webvid_path(root: Location, split: str, annotations: Location | None = None) -> Location:
    """The annotation CSV the ``webvid`` adapter reads for ``split``."""
    default = remote.join(root, f"results_2M_{split}.csv")
    return annotations or webvid_csv(root, split) or default


def webvid(root: Location, split: str, annotations: Location | None = None) -> list[VideoRecord]:
    """``results_{2M,10M}_<split>.csv`` (or ``annotations``) + ``videos/<page_dir>/<videoid>.mp4``."""
    path = webvid_path(root, split, annotations)
    return [webvid_record(root, path, ln, row) for ln, row in _read_csv(path, WEBVID_COLUMNS)]


def webvid_slice(
    root: Location, path: Location, byte_range: tuple[int, int, int]
) -> list[VideoRecord]:
    """The records of one byte range of a WebVid CSV (a worker reads only its slice)."""
    rows = _read_csv(path, WEBVID_COLUMNS, byte_range)
    return [webvid_record(root, path, ln, row) for ln, row in rows]


# --- CC3M (img2dataset "files" layout) ---------------------------------------------------------


def _cc3m_dirs(root: Path, split: str) -> bool:
    """Whether the split's folder holds img2dataset's ``NNNNN/`` image folders."""
    base = root / split if (root / split).is_dir() else root
    return base.is_dir() and any(p.is_dir() and p.name.isdigit() for p in base.iterdir())


def cc3m(root: Path, split: str) -> list[VideoRecord]:
    """``NNNNN/NNNNNNNNN.jpg`` with a same-stem ``.txt`` caption; ``split`` is a subfolder if present.

    A ``.jpg`` without ``.txt`` becomes a record with no caption, a ``.txt`` without ``.jpg`` a
    record with missing media: both end up in ``failures.jsonl``.
    """
    base = root / split if (root / split).is_dir() else root
    stems: dict[Path, None] = {}
    for sub in sorted(p for p in base.iterdir() if p.is_dir() and p.name.isdigit()):
        for f in sorted(sub.iterdir()):
            if f.suffix in (".jpg", ".txt"):
                stems.setdefault(f.with_suffix(""), None)
    if not stems:
        raise AnnotationError(f"{base}: no NNNNN/*.jpg or *.txt files (img2dataset files layout)")
    records = []
    for stem in stems:
        txt = stem.with_suffix(".txt")
        caption = txt.read_text(encoding="utf-8").strip() if txt.is_file() else ""
        key = stem.name
        meta = stem.with_suffix(".json")
        if meta.is_file():
            try:
                key = str(json.loads(meta.read_text(encoding="utf-8")).get("key", key))
            except json.JSONDecodeError as err:
                raise AnnotationError(f"{meta}:{err.lineno}: not valid JSON ({err.msg})") from None
        records.append(
            _record(
                root, f"{stem.parent.name}_{key}", stem.with_suffix(".jpg"), [caption], None, True
            )
        )
    return records


# --- MSR-VTT -----------------------------------------------------------------------------------


def _msrvtt_sentences(path: Path) -> tuple[dict[str, list[str]], list[dict]]:
    data = _read_json(path)
    if not isinstance(data, dict) or "videos" not in data or "sentences" not in data:
        raise AnnotationError(f"{path}: expected an object with 'videos' and 'sentences'")
    sentences: dict[str, list[str]] = {}
    for i, s in enumerate(data["sentences"]):
        if not isinstance(s, dict) or "video_id" not in s or "caption" not in s:
            raise _entry_error(path, f"sentences[{i}]", "needs 'video_id' and 'caption'")
        sentences.setdefault(str(s["video_id"]), []).append(str(s["caption"]))
    for i, v in enumerate(data["videos"]):
        if not isinstance(v, dict) or "video_id" not in v:
            raise _entry_error(path, f"videos[{i}]", "needs 'video_id'")
    return sentences, data["videos"]


# The training lists of the retrieval literature; ``train`` is the 7k list, the one behind
# VindLU's reported MSR-VTT numbers (its README's fine-tuning command runs
# configs/ret_msrvtt.py, which trains on msrvtt_ret_train7k.json; ret_msrvtt_9k.py is the
# variant). ``train9k`` builds the 9k list (docs/data.md).
MSRVTT_TRAIN_LISTS = {
    "train": "MSRVTT_train.7k.csv",
    "train7k": "MSRVTT_train.7k.csv",
    "train9k": "MSRVTT_train.9k.csv",
}


def msrvtt(root: Path, split: str) -> list[VideoRecord]:
    """Train: the 7k list (``MSRVTT_train.7k.csv``; ``train9k``: the 9k list) with all
    sentences from ``MSRVTT_data.json``; test: the 1k-A ``MSRVTT_JSFUSION_test.csv``, one
    sentence per video; ``validate``: the official split field."""
    videos = root / "videos"
    if split == "test":
        path = root / "MSRVTT_JSFUSION_test.csv"
        records = []
        for line, row in _read_csv(path, ("video_id", "sentence")):
            vid = row["video_id"].strip()
            if not vid:
                raise AnnotationError(f"{path}:{line}: empty video_id")
            records.append(_record(root, vid, videos / f"{vid}.mp4", [row["sentence"]]))
        return records
    data_path = root / "MSRVTT_data.json"
    sentences, entries = _msrvtt_sentences(data_path)
    if split in MSRVTT_TRAIN_LISTS:
        list_path = root / MSRVTT_TRAIN_LISTS[split]
        if not list_path.is_file():
            other = "train9k" if split != "train9k" else "train"
            raise AnnotationError(
                f"{list_path}: no such file (the MSR-VTT {split} list); put it beside "
                f"MSRVTT_data.json, or build SPLIT={other}"
            )
        ids = [row["video_id"].strip() for _, row in _read_csv(list_path, ("video_id",))]
    else:  # the official split field (validate / test)
        ids = [str(v["video_id"]) for v in entries if v.get("split") == split]
        if not ids:
            raise AnnotationError(f"{data_path}: no videos with split {split!r}")
    return [_record(root, v, videos / f"{v}.mp4", sentences.get(v, [])) for v in ids]


# --- paragraph datasets ------------------------------------------------------------------------


def _paragraph(sentences: list[tuple[float, str, list[float]]]) -> tuple[str, list[list[float]]]:
    """Sentences sorted by start time, stripped and joined with a space, plus their timestamps."""
    ordered = sorted(enumerate(sentences), key=lambda t: (t[1][0], t[0]))
    text = " ".join(s.strip() for _, (_, s, _) in ordered if s.strip())
    return text, [list(ts) for _, (_, _, ts) in ordered]


def didemo(root: Path, split: str) -> list[VideoRecord]:
    """``<split>_data.json`` moment annotations -> one paragraph per video.

    Each description's segment is the span most annotators agree on (earliest on ties), in
    seconds (DiDeMo's segments are 5 s); the paragraph is ordered by earliest segment.
    """
    path = root / f"{split}_data.json"
    data = _read_json(path)
    if not isinstance(data, list):
        raise AnnotationError(f"{path}: expected a list of moment annotations")
    by_video: dict[str, list[tuple[float, str, list[float]]]] = {}
    for i, a in enumerate(data):
        if not isinstance(a, dict) or not {"video", "description", "times"} <= set(a):
            raise _entry_error(path, i, "needs 'video', 'description' and 'times'")
        times = a["times"]
        try:
            pairs = [(int(s), int(e)) for s, e in times]
        except (TypeError, ValueError):
            raise _entry_error(
                path, i, f"'times' must be [[start, end], ...], got {times!r}"
            ) from None
        if not pairs:
            raise _entry_error(path, i, "'times' is empty")
        best = max(sorted(set(pairs)), key=pairs.count)
        earliest = min(s for s, _ in pairs)
        span = [best[0] * 5.0, (best[1] + 1) * 5.0]
        by_video.setdefault(str(a["video"]), []).append((earliest, str(a["description"]), span))
    records = []
    for video, sents in by_video.items():
        stem = Path(video).stem if Path(video).suffix.lower() in VIDEO_EXTS else video
        text, ts = _paragraph(sents)
        media = _find_video(root / "videos", stem, video)
        records.append(_record(root, stem, media, [text], ts))
    return records


ANET_FILES = {
    "train": "train.json",
    "val": "val_1.json",
    "val_1": "val_1.json",
    "val_2": "val_2.json",
}


def anet(root: Path, split: str) -> list[VideoRecord]:
    """ActivityNet Captions ``train.json`` / ``val_1.json`` -> one paragraph per video."""
    path = root / ANET_FILES.get(split, f"{split}.json")
    data = _read_json(path)
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: expected {{video_id: {{timestamps, sentences}}}}")
    records = []
    for vid, entry in data.items():
        if not isinstance(entry, dict) or not {"timestamps", "sentences"} <= set(entry):
            raise _entry_error(path, vid, "needs 'timestamps' and 'sentences'")
        ts, sents = entry["timestamps"], entry["sentences"]
        if len(ts) != len(sents):
            raise _entry_error(path, vid, f"{len(ts)} timestamps for {len(sents)} sentences")
        try:
            items = [
                (float(t[0]), str(s), [float(t[0]), float(t[1])])
                for t, s in zip(ts, sents, strict=False)
            ]
        except (TypeError, ValueError, IndexError):
            raise _entry_error(path, vid, f"timestamps must be [[s, e], ...], got {ts!r}") from None
        text, stamps = _paragraph(items)
        records.append(_record(root, vid, _find_video(root / "videos", vid), [text], stamps))
    return records


# --- generic formats ---------------------------------------------------------------------------


def vindlu(root: Path, split: str, video_root: Path | None = None) -> list[VideoRecord]:
    """A VindLU/Singularity JSON list of ``{"video", "caption": str | [str]}``.

    ``root`` is the JSON file itself or a folder holding ``<split>.json``; videos are relative
    to ``video_root`` (default: ``videos/`` beside the JSON if it exists, else its folder).
    Entries naming the same video are merged into one record.
    """
    path = root if root.is_file() else root / f"{split}.json"
    base = path.parent
    if video_root is None:
        video_root = base / "videos" if (base / "videos").is_dir() else base
    data = _read_json(path)
    if not isinstance(data, list):
        raise AnnotationError(f"{path}: expected a list of {{'video', 'caption'}} entries")
    merged: dict[str, list[str]] = {}
    for i, e in enumerate(data):
        if not isinstance(e, dict) or "video" not in e or "caption" not in e:
            raise _entry_error(path, i, "needs 'video' and 'caption'")
        caps = e["caption"] if isinstance(e["caption"], list) else [e["caption"]]
        if not all(isinstance(c, str) for c in caps):
            raise _entry_error(path, i, "'caption' must be a string or a list of strings")
        merged.setdefault(str(e["video"]), []).extend(caps)
    return [
        _record(video_root, str(Path(v).with_suffix("")), video_root / v, caps)
        for v, caps in merged.items()
    ]


def folder(root: Path, split: str, annotations: Path | None = None) -> list[VideoRecord]:
    """``<root>/captions.csv`` (or ``annotations``: ``path,caption``); rows with the same path are
    one video."""
    path = annotations or root / "captions.csv"
    merged: dict[str, list[str]] = {}
    for line, row in _read_csv(path, ("path", "caption")):
        rel = row["path"].strip()
        if not rel:
            raise AnnotationError(f"{path}:{line}: empty path")
        merged.setdefault(rel, []).append(row["caption"])
    return [
        _record(
            root,
            str(Path(rel).with_suffix("")),
            root / rel,
            caps,
            None,
            Path(rel).suffix.lower() in (".jpg", ".jpeg", ".png"),
        )
        for rel, caps in merged.items()
    ]


# --- webdataset tars (video2dataset / img2dataset output) --------------------------------------


def tar_source(dataset: str, root: Path, split: str) -> TarSource | None:
    """The split's input tars when ``root`` has the webdataset layout (``webvid``, ``cc3m``,
    ``wds``), else None. A folder holding both layouts is refused: which one is meant is not
    guessed."""
    if dataset not in MEDIA:
        return None
    folder = tar_folder(root, split)
    if not list_tars(folder):
        return None
    other = _native_layout(dataset, root, split)
    if other:
        raise UsageError(
            f"{root} holds both {other} and input tars ({folder}/*.tar) for {dataset} split "
            f"{split}: point DATA= at a folder with one of them"
        )
    return TarSource(dataset, os.path.abspath(root), os.path.abspath(folder))


def _native_layout(dataset: str, root: Path, split: str) -> str | None:
    """What ``root`` holds of the dataset's own (non-tar) layout, for the refusal above."""
    if dataset == "webvid":
        path = webvid_csv(root, split)
        return path.name if path else None
    if dataset == "cc3m" and _cc3m_dirs(root, split):
        return "NNNNN/ image folders"
    return None


def wds(root: Path, split: str) -> list[VideoRecord]:
    """``<root>/[<split>/]NNNNN.tar`` webdataset tars: every sample, read whole."""
    source = tar_source("wds", root, split)
    if source is None:
        raise AnnotationError(f"{tar_folder(root, split)}: no *.tar files ({LAYOUT})")
    return tar_records(source)


ADAPTERS: dict[str, Callable[[Path, str], list[VideoRecord]]] = {
    "webvid": webvid,
    "cc3m": cc3m,
    "wds": wds,
    "msrvtt": msrvtt,
    "didemo": didemo,
    "anet": anet,
    "vindlu": vindlu,
    "folder": folder,
}


# The annotation files each adapter looks for (what a user is told when none is there).
LOOKED_FOR: dict[str, Callable[[str], list[str]]] = {
    "webvid": lambda s: [
        f"results_2M_{s}.csv",
        f"results_10M_{s}.csv",
        f"results_*_{s}.csv",
        f"[{s}/]{LAYOUT}",
    ],
    "cc3m": lambda s: [
        f"[{s}/]NNNNN/*.jpg + NNNNN/*.txt (img2dataset files layout)",
        f"[{s}/]{LAYOUT}",
    ],
    "wds": lambda s: [f"[{s}/]{LAYOUT}"],
    "msrvtt": lambda s: (
        ["MSRVTT_JSFUSION_test.csv"]
        if s == "test"
        else ["MSRVTT_data.json", *([MSRVTT_TRAIN_LISTS[s]] if s in MSRVTT_TRAIN_LISTS else [])]
    ),
    "didemo": lambda s: [f"{s}_data.json"],
    "anet": lambda s: [ANET_FILES.get(s, f"{s}.json")],
    "vindlu": lambda s: [f"{s}.json"],
    "folder": lambda s: ["captions.csv"],
}
# Adapters that accept ANNOTATIONS=<file> in place of the default name.
TAKES_ANNOTATIONS = ("webvid", "folder")
# Adapters whose DATA= may be an fsspec URL (s3://, gs://, hf://, http(s)://).
READS_URLS = ("webvid",)


def check_url_data(dataset: str, data: str | Path) -> None:
    """Refuse a URL ``DATA=`` for a dataset whose adapter reads local folders only."""
    if is_url(data) and dataset not in READS_URLS:
        raise UsageError(
            f"{dataset} is read from a local folder (DATA={data}): URLs are read for "
            f"{', '.join(READS_URLS)}; copy the data to a local folder"
        )


def has_annotations(dataset: str, root: Path, split: str) -> bool:
    """Whether ``root`` holds the annotation files of ``split`` (nothing is read or written)."""
    if dataset in MEDIA and not is_url(root) and list_tars(tar_folder(root, split)):
        return True  # input tars: local folders only
    if dataset == "webvid":
        return webvid_csv(root, split) is not None
    if dataset == "cc3m":
        return _cc3m_dirs(root, split)
    if dataset == "wds":
        return False
    if dataset == "vindlu" and root.is_file():
        return True
    return all((root / name).is_file() for name in LOOKED_FOR[dataset](split))


def load_records(
    dataset: str, data_root: str | Path, split: str, annotations: str | Path | None = None
) -> list[VideoRecord]:
    """The records of one split of a dataset, read from its native layout under ``data_root``
    (``annotations``: the annotation file, for the datasets in ``TAKES_ANNOTATIONS``)."""
    if dataset not in ADAPTERS:
        raise UsageError(
            f"unknown dataset (DATASET={dataset}): choose one of {', '.join(sorted(ADAPTERS))}"
        )
    check_url_data(dataset, data_root)
    root = remote.location(data_root)
    if not is_url(root) and not Path(root).exists():  # a URL's files are looked for instead
        raise UsageError(f"data folder {root} does not exist (DATA=): check the path")
    if annotations is not None:
        if dataset not in TAKES_ANNOTATIONS:
            raise UsageError(
                f"ANNOTATIONS= is read by {', '.join(TAKES_ANNOTATIONS)} only, not {dataset}"
            )
        if not remote.is_file(remote.location(annotations)):
            raise UsageError(f"annotation file {annotations} does not exist (ANNOTATIONS=)")
        return ADAPTERS[dataset](root, split, remote.location(annotations))
    source = None if is_url(root) else tar_source(dataset, root, split)  # tars: local only
    if source is not None:
        return tar_records(source)
    return ADAPTERS[dataset](root, split)


def sliced_source(
    dataset: str, root: Path, split: str, annotations: Path | None = None
) -> CsvSource | TarSource | None:
    """The inputs the builder's workers read in slices (docs/data.md, "Shards at scale"): input
    tars (``webvid``, ``cc3m``, ``wds``) or WebVid's CSV; None: the adapter's list is read whole."""
    if annotations is None and not is_url(root):  # input tars are read from local folders
        source = tar_source(dataset, root, split)
        if source is not None:
            return source
    if dataset == "webvid":
        path = webvid_path(root, split, annotations)
        if remote.is_file(path):
            webvid_slice(root, path, (0, 0, 2))  # checks the header here, not in every worker
            return CsvSource(webvid_slice, str(root), str(path))
    return None
