"""Synthetic corpora in each dataset's native layout.

A video shows one shape (circle, square, triangle, cross) of a colour and size on a plain
background, moving left/right/up/down slowly or quickly; the path keeps it on screen and a shape
moving left starts on the right, so direction and speed are readable only from frame order.
Captions name every attribute in varied wording. Test sets hold "direction twins": a twin is
its partner's frames in reverse order (opposite direction, everything else equal), and on request
(``near_duplicates``) near-duplicate distractors: a copy of an earlier test video with exactly
one of direction, speed or size changed (same shape, colour and background). ActivityNet-
and DiDeMo-style videos chain 2-3 such events with timestamps, one sentence per event.

Frames are drawn with numpy and piped as raw RGB to ffmpeg (libx264, yuv420p, one thread,
bitexact), in a process pool. ``data_root/synthetic_attributes.json`` describes every video:
``{key: {"events": [attributes...], "twin": key | null, "split": str}}`` (single-event videos
also carry their attributes at the top level; a near duplicate also ``"near_duplicate_of": key``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from preprocessing.tools import find_tool
from t2v2t.data.schema import safe_key
from t2v2t.seeding import rng_for

SHAPES = {
    "circle": ["circle", "disc", "ball", "round dot"],
    "square": ["square", "box", "block"],
    "triangle": ["triangle", "three-sided shape", "wedge"],
    "cross": ["cross", "plus sign", "plus shape"],
}
COLOURS = {
    "red": ((220, 30, 30), ["red", "scarlet"]),
    "green": ((30, 190, 40), ["green", "lime"]),
    "blue": ((40, 90, 255), ["blue", "azure"]),
    "yellow": ((245, 225, 20), ["yellow", "golden"]),
    "white": ((245, 245, 245), ["white", "snowy"]),
    "purple": ((165, 40, 205), ["purple", "violet"]),
}
BACKGROUNDS = {
    "black": ((12, 12, 12), ["black", "dark"]),
    "gray": ((120, 120, 120), ["gray", "grey"]),
    "brown": ((115, 70, 25), ["brown", "chocolate"]),
    "navy": ((15, 25, 95), ["navy", "dark blue"]),
}
# Sizes are fractions of the frame height; big enough that a tiny ViT at 112 px (7x7 patches)
# sees the shape over several patches, so its colour and form are learnable in minutes on CPU.
SIZES = {"small": (0.3, ["small", "little", "tiny"]), "large": (0.55, ["large", "big", "huge"])}
DIRECTIONS = {
    "left": ["to the left", "leftward", "towards the left"],
    "right": ["to the right", "rightward", "towards the right"],
    "up": ["upward", "up", "towards the top"],
    "down": ["downward", "down", "towards the bottom"],
}
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
SPEEDS = {
    "slow": (0.3, ["slowly", "at a slow pace", "gently"]),
    "quick": (0.8, ["quickly", "fast", "rapidly"]),
}
VERBS = [
    ("moves", "moving"),
    ("slides", "sliding"),
    ("travels", "travelling"),
    ("glides", "gliding"),
]
TEMPLATES = [
    "a {size} {colour} {shape} {verb} {dir} {speed} on a {bg} background",
    "on {bg}, a {size} {colour} {shape} {verb} {dir} {speed}",
    "the {size} {colour} {shape} is {verbing} {dir} {speed} over a {bg} backdrop",
    "a {bg} background with a {size} {colour} {shape} that {verb} {speed} {dir}",
    "{size} {colour} {shape} {verbing} {speed} {dir} against {bg}",
    "watch a {colour} {shape}, {size}, {verbing} {dir} {speed} on {bg}",
]
IMAGE_TEMPLATES = [
    "a {size} {colour} {shape} on a {bg} background",
    "on {bg}, a {size} {colour} {shape}",
    "a {bg} backdrop with a {size} {colour} {shape}",
]

# Per dataset: (train split, train size, test split, test size, fps, seconds per event).
DEFAULTS: dict[str, dict[str, Any]] = {
    "webvid": {"splits": {"train": 300}, "fps": 8, "duration": 4.0},
    "cc3m": {"splits": {"train": 300}},
    "msrvtt": {"splits": {"train": 800, "test": 100}, "fps": 8, "duration": 4.0},
    "anet": {"splits": {"train": 200, "val": 100}, "fps": 8},
    "didemo": {"splits": {"train": 200, "test": 100}, "fps": 5},
    "folder": {"splits": {"train": 50}, "fps": 8, "duration": 4.0},
}
TWIN_FRACTION = 0.2
# What a near duplicate changes (one of them, in one event): the attributes a caption names that
# the tiny demo model reads least well, so a near duplicate competes with its original.
NEAR_ATTRIBUTES: dict[str, dict[str, Any]] = {
    "direction": DIRECTIONS,
    "speed": SPEEDS,
    "size": SIZES,
}
NEAR_PER_VIDEO = 3  # near duplicates made of one original at most
ATTRIBUTES_FILE = "synthetic_attributes.json"
# Present while a corpus is being written: annotation files exist before their videos do, so
# a killed generation must not pass for a finished corpus.
INCOMPLETE_FLAG = ".synthetic-incomplete"


def is_complete(data_root: str | Path) -> bool:
    """False while (or after a crash during) :func:`generate` writing ``data_root``."""
    return not (Path(data_root) / INCOMPLETE_FLAG).exists()


@dataclass(frozen=True)
class Event:
    shape: str
    colour: str
    size: str
    background: str
    direction: str
    speed: str


@dataclass(frozen=True)
class RenderJob:
    path: str
    events: list[Event]
    frames_per_event: list[int]
    width: int
    height: int
    fps: float
    seed_key: str
    reverse: bool = False  # a direction twin: its partner's frames in reverse order
    image: bool = False


def random_event(rng: np.random.Generator, background: str | None = None) -> Event:
    # Shape colours and background colours are disjoint sets: a shape never blends in.
    return Event(
        shape=str(rng.choice(list(SHAPES))),
        colour=str(rng.choice(list(COLOURS))),
        size=str(rng.choice(list(SIZES))),
        background=background or str(rng.choice(list(BACKGROUNDS))),
        direction=str(rng.choice(list(DIRECTIONS))),
        speed=str(rng.choice(list(SPEEDS))),
    )


def caption(event: Event, rng: np.random.Generator, template: str | None = None) -> str:
    """One sentence naming every attribute of ``event``, wording drawn from ``rng``."""
    verb, verbing = VERBS[int(rng.integers(len(VERBS)))]
    words = {
        "size": rng.choice(SIZES[event.size][1]),
        "colour": rng.choice(COLOURS[event.colour][1]),
        "shape": rng.choice(SHAPES[event.shape]),
        "bg": rng.choice(BACKGROUNDS[event.background][1]),
        "dir": rng.choice(DIRECTIONS[event.direction]),
        "speed": rng.choice(SPEEDS[event.speed][1]),
        "verb": verb,
        "verbing": verbing,
    }
    return (template or str(rng.choice(TEMPLATES))).format(**words)


def captions(event: Event, rng: np.random.Generator, count: int) -> list[str]:
    """``count`` captions from distinct templates."""
    order = rng.permutation(len(TEMPLATES))[:count]
    return [caption(event, rng, TEMPLATES[i]) for i in order]


def shape_mask(shape: str, s: int) -> np.ndarray:
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    c = s / 2
    if shape == "circle":
        return (xx - c) ** 2 + (yy - c) ** 2 <= c * c
    if shape == "square":
        return np.ones((s, s), bool)
    if shape == "triangle":  # apex up
        return np.abs(xx - c) <= yy / 2
    if shape == "cross":
        return (np.abs(xx - c) <= s / 6) | (np.abs(yy - c) <= s / 6)
    raise ValueError(f"unknown shape {shape!r}")


def render_event(event: Event, n: int, width: int, height: int, key: str) -> np.ndarray:
    """``n`` frames ``[n, H, W, 3]`` of one event; the path stays on screen."""
    rng = rng_for("path", key)
    s = max(4, int(round(SIZES[event.size][0] * height)))
    mask = shape_mask(event.shape, s)
    frames = np.empty((n, height, width, 3), np.uint8)
    frames[:] = BACKGROUNDS[event.background][0]
    horizontal = event.direction in ("left", "right")
    span = (width if horizontal else height) - s  # room along the motion axis
    dist = SPEEDS[event.speed][0] * span
    start = rng.uniform(dist, span)  # "left"/"up": start far side, move towards 0
    along = np.linspace(start, start - dist, n)
    if event.direction in ("right", "down"):
        along = span - along
    across = rng.uniform(0, (height if horizontal else width) - s)
    colour = COLOURS[event.colour][0]
    for t in range(n):
        a, b = int(round(along[t])), int(round(across))
        x, y = (a, b) if horizontal else (b, a)
        frames[t, y : y + s, x : x + s][mask] = colour
    return frames


def _frames(job: RenderJob) -> np.ndarray:
    parts = [
        render_event(e, n, job.width, job.height, f"{job.seed_key}/{i}")
        for i, (e, n) in enumerate(zip(job.events, job.frames_per_event, strict=True))
    ]
    frames = np.concatenate(parts)
    return np.ascontiguousarray(frames[::-1] if job.reverse else frames)


def _render_batch(jobs: list[RenderJob]) -> None:
    """Encode a batch of same-size clips with ONE ffmpeg process (its start-up dominates the
    cost of a tiny clip): frames go in back to back, a forced IDR frame starts each clip, and
    the segment muxer cuts there into standalone MP4s, renamed to their final paths."""
    for job in jobs:
        Path(job.path).parent.mkdir(parents=True, exist_ok=True)
    images = [j for j in jobs if j.image]
    for job in images:
        frames = _frames(job)
        Image.fromarray(frames[len(frames) // 2]).save(job.path, format="JPEG", quality=90)
    jobs = [j for j in jobs if not j.image]
    if not jobs:
        return
    first = jobs[0]
    lengths = [sum(j.frames_per_event) for j in jobs]
    cuts = np.cumsum(lengths)[:-1].tolist()
    tmp = Path(first.path).parent / f".render-{os.getpid()}-{Path(first.path).stem}"
    tmp.mkdir(exist_ok=True)
    cmd = [
        find_tool("ffmpeg"),
        "-nostdin",
        "-v",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{first.width}x{first.height}",
        "-r",
        f"{first.fps:g}",
        "-i",
        "pipe:",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-threads",
        "1",
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-map_metadata",
        "-1",
    ]
    if cuts:
        cmd += [
            "-force_key_frames",
            "expr:" + "+".join(f"eq(n,{c})" for c in cuts),
            "-f",
            "segment",
            "-segment_frames",
            ",".join(map(str, cuts)),
            "-reset_timestamps",
            "1",
            "-segment_format",
            "mp4",
        ]
    cmd.append(str(tmp / ("%06d.mp4" if cuts else "000000.mp4")))  # one clip: no segmenting
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    try:
        for job in jobs:  # one clip in memory at a time
            proc.stdin.write(_frames(job).tobytes())
    finally:
        proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError(f"ffmpeg failed encoding {len(jobs)} clips into {tmp}")
    for i, job in enumerate(jobs):
        os.replace(tmp / f"{i:06d}.mp4", job.path)
    tmp.rmdir()


@dataclass
class Video:
    key: str
    split: str
    events: list[Event]
    seconds: list[float]  # per event
    twin: str | None = None
    reverse: bool = False
    caps: list[list[str]] | None = None  # per event, its captions
    near_duplicate_of: str | None = None  # the test video this one copies with one change


def near_duplicate(
    events: list[Event], rng: np.random.Generator, used: set[tuple]
) -> list[Event] | None:
    """``events`` with one attribute of one event (direction, speed or size) changed, distinct
    from every signature in ``used`` (and its direction twin's); None when 8 draws found none."""
    for _ in range(8):
        i = int(rng.integers(len(events)))
        name = str(rng.choice(list(NEAR_ATTRIBUTES)))
        values = [v for v in NEAR_ATTRIBUTES[name] if v != getattr(events[i], name)]
        evs = list(events)
        evs[i] = replace(evs[i], **{name: str(rng.choice(values))})
        twin_sig = tuple(replace(e, direction=OPPOSITE[e.direction]) for e in evs)
        if tuple(evs) not in used and twin_sig not in used:
            return evs
    return None


def _near_duplicates(
    base: list[Event], rng: np.random.Generator, used: set[tuple], room: int
) -> list[list[Event]]:
    """Up to ``min(room, NEAR_PER_VIDEO)`` near duplicates of ``base``'s events, each recorded
    in ``used``."""
    out: list[list[Event]] = []
    for _ in range(min(room, int(rng.integers(1, NEAR_PER_VIDEO + 1)))):
        evs = near_duplicate(base, rng, used)
        if evs is None:
            break
        used.update([tuple(evs), tuple(replace(e, direction=OPPOSITE[e.direction]) for e in evs)])
        out.append(evs)
    return out


def plan(
    dataset: str,
    splits: dict[str, int],
    seed: int,
    events: tuple[int, int],
    seconds: list[float],
    near_duplicates: float = 0.0,
) -> list[Video]:
    """Which videos to render: train random, test distinct with ~20% direction twins and
    (``near_duplicates``: that fraction of the test split) near-duplicate distractors."""
    videos: list[Video] = []
    for split, count in splits.items():
        rng = rng_for(seed, dataset, split)
        test = split != "train"
        used: set[tuple] = set()
        n_twins = int(round(count * TWIN_FRACTION / 2)) if test else 0
        n_near = int(round(count * near_duplicates)) if test else 0
        near_rng = rng_for(seed, dataset, split, "near") if n_near else None
        i = 0
        while len([v for v in videos if v.split == split]) < count:
            k = int(rng.integers(events[0], events[1] + 1))
            bg = str(rng.choice(list(BACKGROUNDS)))
            evs = [random_event(rng, bg) for _ in range(k)]
            secs = [float(rng.choice(seconds)) for _ in evs]
            sig = tuple(evs)
            twin_sig = tuple(replace(e, direction=OPPOSITE[e.direction]) for e in evs)
            if test and (sig in used or twin_sig in used):
                continue  # test videos are all distinguishable
            used.update([sig, twin_sig])
            key = f"{split}{i:05d}"
            i += 1
            videos.append(Video(key, split, evs, secs))
            left = count - len([v for v in videos if v.split == split])
            if n_twins > 0 and left > 0:
                n_twins -= 1
                twin = Video(
                    f"{split}{i:05d}",
                    split,
                    [replace(e, direction=OPPOSITE[e.direction]) for e in reversed(evs)],
                    list(reversed(secs)),
                    twin=key,
                    reverse=True,
                )
                i += 1
                videos[-1].twin = twin.key
                videos.append(twin)
            elif near_rng is not None and n_near > 0 and left > 0:
                # Near duplicates draw from their own stream: without them the plan is unchanged.
                base = videos[-1]
                for evs in _near_duplicates(base.events, near_rng, used, min(left, n_near)):
                    videos.append(Video(f"{split}{i:05d}", split, evs, list(secs),
                                        near_duplicate_of=base.key))  # fmt: skip
                    i += 1
                    n_near -= 1
    for v in videos:
        rng = rng_for(seed, dataset, "captions", v.key)
        v.caps = [captions(e, rng, int(rng.integers(3, 6))) for e in v.events]
    return videos


def _attributes(videos: list[Video]) -> dict[str, Any]:
    out = {}
    for v in videos:
        entry: dict[str, Any] = {
            "events": [asdict(e) for e in v.events],
            "twin": v.twin,
            "split": v.split,
        }
        if v.near_duplicate_of:
            entry["near_duplicate_of"] = v.near_duplicate_of
        if len(v.events) == 1:
            entry.update(asdict(v.events[0]))
        out[v.key] = entry
    return out


RENDER_BATCH = 32  # clips per ffmpeg process
RENDER_PIXELS = 64_000_000  # ... and at most this many pixels, so big clips still spread out


def _render_all(jobs: list[RenderJob], workers: int | None) -> None:
    # Batches depend only on the job list, never on the worker count: same bytes either way.
    batches: list[list[RenderJob]] = []
    pixels = 0
    for job in jobs:
        size = job.width * job.height * sum(job.frames_per_event)
        last = batches[-1] if batches else None
        fits = (
            last is not None
            and (last[0].width, last[0].height, last[0].fps) == (job.width, job.height, job.fps)
            and len(last) < RENDER_BATCH
            and pixels + size <= RENDER_PIXELS
        )
        if fits:
            last.append(job)
            pixels += size
        else:
            batches.append([job])
            pixels = size
    workers = min(workers or os.cpu_count() or 1, len(batches))
    if workers <= 1:
        for b in batches:
            _render_batch(b)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_render_batch, batches))


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")


def _split_sizes(cfg: dict[str, Any], size: int | None, test_size: int | None) -> dict[str, int]:
    """Videos per split: the dataset's defaults, the training split resized to ``size`` (its
    evaluation split follows at a quarter, 4 to its default), or set by ``test_size``."""
    splits = dict(cfg["splits"])
    names = list(splits)
    if size is not None:
        splits[names[0]] = size
        if len(names) > 1:
            splits[names[1]] = max(4, min(splits[names[1]], size // 4))
    if test_size is not None and len(names) > 1:
        splits[names[1]] = test_size
    return splits


def _render_jobs(
    dataset: str,
    videos: list[Video],
    paths: dict[str, Path],
    video_size: tuple[int, int],
    fps: float,
    seed: int,
) -> list[RenderJob]:
    """One job per video; a twin renders its partner's events in original order, then
    reverses the frames."""
    width, height = video_size
    by_key = {v.key: v for v in videos}
    jobs = []
    for v in videos:
        source = by_key[v.twin] if v.reverse else v
        jobs.append(
            RenderJob(
                str(paths[v.key]),
                source.events,
                [max(1, int(round(s * fps))) for s in source.seconds],
                width,
                height,
                fps,
                f"{seed}/{dataset}/{v.twin if v.reverse else v.key}",
                v.reverse,
                image=dataset == "cc3m",
            )
        )
    return jobs


def _native_layout(dataset: str) -> Callable[[Path, list[Video], int], dict[str, Path]]:
    """The writer of ``dataset``'s annotation files (it returns each video's media path)."""
    return {
        "webvid": _webvid,
        "cc3m": _cc3m,
        "msrvtt": _msrvtt,
        "anet": _anet,
        "didemo": _didemo,
        "folder": _folder,
    }[dataset]


def generate(
    dataset: str,
    data_root: str | Path,
    *,
    size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    video_size: tuple[int, int] = (160, 120),
    fps: float | None = None,
    duration: float | None = None,
    workers: int | None = None,
    near_duplicates: float = 0.0,
) -> dict[str, Any]:
    """Write a synthetic ``dataset`` corpus under ``data_root`` in the dataset's native layout.

    ``size`` = number of training videos (default per dataset), ``test_size`` of the evaluation
    split; ``video_size`` = (width, height); ``duration`` = seconds per single-event clip;
    ``near_duplicates`` = the fraction of the evaluation split made of near-duplicate
    distractors (module docstring). Returns the attributes written to
    ``synthetic_attributes.json``.
    """
    if not 0.0 <= near_duplicates < 1.0:
        raise ValueError(f"near_duplicates must be in [0, 1), got {near_duplicates}")
    if dataset not in DEFAULTS:
        raise ValueError(f"no synthetic corpus for {dataset!r}; known: {', '.join(DEFAULTS)}")
    cfg = DEFAULTS[dataset]
    splits = _split_sizes(cfg, size, test_size)
    fps = float(fps or cfg.get("fps", 8))
    root = Path(data_root)
    root.mkdir(parents=True, exist_ok=True)
    (root / INCOMPLETE_FLAG).touch()
    for stale in sorted(root.rglob(".render-*"), reverse=True):  # left by a killed generation
        for f in stale.iterdir():
            f.unlink()
        stale.rmdir()

    if dataset == "anet":
        events, seconds = (2, 3), [2.0, 2.5, 3.0]
    elif dataset == "didemo":
        events, seconds = (2, 3), [5.0, 10.0]
    else:
        events, seconds = (1, 1), [float(duration or cfg.get("duration", 4.0))]
    videos = plan(dataset, splits, seed, events, seconds, near_duplicates)
    paths = _native_layout(dataset)(root, videos, seed)
    _render_all(_render_jobs(dataset, videos, paths, video_size, fps, seed), workers)
    attrs = _attributes(videos)
    (root / ATTRIBUTES_FILE).write_text(json.dumps(attrs, indent=1, sort_keys=True) + "\n")
    (root / INCOMPLETE_FLAG).unlink()
    return attrs


# --- native layouts ----------------------------------------------------------------------------


def _webvid(root: Path, videos: list[Video], seed: int) -> dict[str, Path]:
    rows, paths = [], {}
    for n, v in enumerate(videos):
        vid = str(1000000 + n)
        page = f"{(n // 50) * 50 + 1:06d}_{(n // 50 + 1) * 50:06d}"
        paths[vid] = root / "videos" / page / f"{vid}.mp4"
        secs = int(round(sum(v.seconds)))
        rows.append(
            [
                vid,
                f"https://example.invalid/stock-footage-{vid}.mp4",
                f"PT00H00M{secs:02d}S",
                page,
                v.caps[0][0],
            ]
        )
    _write_csv(
        root / "results_2M_train.csv",
        ["videoid", "contentUrl", "duration", "page_dir", "name"],
        rows,
    )
    _rekey(videos, list(paths))
    return paths


def _cc3m(root: Path, videos: list[Video], seed: int) -> dict[str, Path]:
    paths = {}
    for n, v in enumerate(videos):
        sub, key = f"{n // 10000:05d}", f"{n:09d}"
        rng = rng_for(seed, "cc3m-image", n)
        e = v.events[0]
        text = caption(e, rng, str(rng.choice(IMAGE_TEMPLATES)))
        folder = root / sub
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{key}.txt").write_text(text + "\n", encoding="utf-8")
        meta = {
            "url": f"https://example.invalid/{key}.jpg",
            "caption": text,
            "key": key,
            "status": "success",
            "error_message": None,
            "width": 160,
            "height": 120,
        }
        (folder / f"{key}.json").write_text(json.dumps(meta) + "\n")
        paths[f"{sub}_{key}"] = folder / f"{key}.jpg"
        v.caps = [[text]]
    n_sub = (len(videos) - 1) // 10000 + 1
    for i in range(n_sub):
        stats = {"count": len(videos), "successes": len(videos), "failed_to_download": 0}
        (root / f"{i:05d}_stats.json").write_text(json.dumps(stats) + "\n")
    _rekey(videos, list(paths))
    return paths


def _msrvtt(root: Path, videos: list[Video], seed: int) -> dict[str, Path]:
    paths, vids, sents = {}, [], []
    train_n = test_n = 0
    test_rows = []
    for v in videos:
        if v.split == "train":
            vid = f"video{train_n}"
            train_n += 1
        else:
            vid = f"video{7010 + test_n}"
            test_rows.append([f"ret{test_n}", f"msr{7010 + test_n}", vid, v.caps[0][0]])
            test_n += 1
        paths[vid] = root / "videos" / f"{vid}.mp4"
        vids.append(
            {
                "category": 0,
                "url": "https://example.invalid/watch",
                "video_id": vid,
                "start time": 0.0,
                "end time": sum(v.seconds),
                "split": v.split,
                "id": int(vid[5:]),
            }
        )
        sents += [
            {"caption": c, "video_id": vid, "sen_id": len(sents) + i}
            for i, c in enumerate(v.caps[0])
        ]
    _rekey(videos, list(paths))
    data = {
        "info": {"description": "synthetic MSR-VTT-style corpus"},
        "videos": vids,
        "sentences": sents,
    }
    (root / "MSRVTT_data.json").write_text(json.dumps(data) + "\n")
    for name in ("MSRVTT_train.9k.csv", "MSRVTT_train.7k.csv"):  # both lists: the same videos
        _write_csv(
            root / name, ["video_id"], [[v["video_id"]] for v in vids if v["split"] == "train"]
        )
    _write_csv(
        root / "MSRVTT_JSFUSION_test.csv", ["key", "vid_key", "video_id", "sentence"], test_rows
    )
    return paths


def _rekey(videos: list[Video], keys: list[str]) -> None:
    """Rename videos to their dataset ids, twins' partner references included."""
    rename = {v.key: k for v, k in zip(videos, keys, strict=False)}
    for v in videos:
        v.key = rename[v.key]
        v.twin = rename.get(v.twin) if v.twin else None
        if v.near_duplicate_of:
            v.near_duplicate_of = rename[v.near_duplicate_of]


def _anet(root: Path, videos: list[Video], seed: int) -> dict[str, Path]:
    files = {"train": "train.json", "val": "val_1.json"}
    data: dict[str, dict[str, Any]] = {s: {} for s in files}
    keys = [f"v_syn{seed}{n:07d}" for n in range(len(videos))]
    for v, key in zip(videos, keys, strict=False):
        t, stamps, sents = 0.0, [], []
        for secs, caps in zip(v.seconds, v.caps, strict=False):
            stamps.append([round(t, 2), round(t + secs, 2)])
            sents.append(" " + caps[0][0].upper() + caps[0][1:] + ".")
            t += secs
        data[v.split][key] = {"duration": round(t, 2), "timestamps": stamps, "sentences": sents}
    for split, name in files.items():
        (root / name).write_text(json.dumps(data[split]) + "\n")
    _rekey(videos, keys)
    return {k: root / "videos" / f"{k}.mp4" for k in keys}


def _didemo(root: Path, videos: list[Video], seed: int) -> dict[str, Path]:
    data: dict[str, list] = {"train": [], "val": [], "test": []}
    keys = [f"{10000000 + n}@N0{seed % 10}_{n}_{n * 7919 % 65536:04x}" for n in range(len(videos))]
    ann = 0
    for v, key in zip(videos, keys, strict=False):
        seg = 0
        for secs, caps in zip(v.seconds, v.caps, strict=False):
            n = int(secs // 5)
            span = [seg, seg + n - 1]
            times = [span, span, span, [seg, seg]]  # annotators mostly agree
            data[v.split].append(
                {
                    "annotation_id": ann,
                    "description": caps[0],
                    "video": f"{key}.mov",
                    "times": times,
                    "num_segments": 6,
                    "dl_link": "https://example.invalid/",
                }
            )
            ann += 1
            seg += n
    for split, items in data.items():
        (root / f"{split}_data.json").write_text(json.dumps(items) + "\n")
    _rekey(videos, [safe_key(k) for k in keys])
    return {safe_key(k): root / "videos" / f"{k}.mp4" for k in keys}


def _folder(root: Path, videos: list[Video], seed: int) -> dict[str, Path]:
    rows, paths = [], {}
    for n, v in enumerate(videos):
        rel = f"clips/clip{n:05d}.mp4"
        paths[v.key] = root / rel
        rows += [[rel, c] for c in v.caps[0][:2]]
    _write_csv(root / "captions.csv", ["path", "caption"], rows)
    _rekey(videos, [f"clips_clip{n:05d}" for n in range(len(videos))])
    return {f"clips_clip{n:05d}": p for n, p in enumerate(paths.values())}
