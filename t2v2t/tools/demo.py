"""`make demo`: the whole pipeline on the synthetic corpora, with a report.

Every stage runs the same command a user would type (``scripts/build_shards.py``,
``scripts/train.py``, ``scripts/evaluate.py``) in a subprocess, so the report's "reproduce" section
is the exact list of commands, and each stage is timed. Output: ``<run>/report.md``,
``<run>/metrics.json`` and PNGs beside them.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from t2v2t.retrieval import load_scores
from t2v2t.retrieval.metrics import best_ranks
from t2v2t.retrieval.report import (
    COLUMNS,
    DATASET_LABELS,
    FUSION_LABELS,
    ablation_markdown,
    posthoc_markdown,
)
from t2v2t.tools.plots import plot_recall, plot_run
from t2v2t.tools.temporal import twin_pairs, twin_preference

ROOT = Path(__file__).resolve().parents[2]


def _drain(pipe: Any, into: list[bytes]) -> None:
    """Read a child's pipe as its bytes arrive (a bar redraws with \\r, not newlines)."""
    fd = pipe.fileno()
    while data := os.read(fd, 65536):
        into.append(data)
    pipe.close()


def _latest_line(chunks: list[bytes], width: int = 160) -> str:
    """The last non-empty line or bar redraw of a child's output so far."""
    tail = b"".join(chunks[-8:])[-4096:].decode(errors="replace")
    parts = [p.strip() for p in tail.replace("\r", "\n").split("\n") if p.strip()]
    return parts[-1][:width] if parts else ""


@dataclass(frozen=True)
class DemoSize:
    """How big each corpus is and how long each stage trains."""

    webvid: int
    msrvtt: int
    msrvtt_test: int
    anet: int
    pretrain_steps: int
    finetune_steps: int
    batch_size: int
    image_size: int
    eval_k: int
    # Fine-tuning reads this many of the 12 stored frames (the loader subsamples), evaluation all
    # 12: on 2 CPU cores a 12-frame step costs 3x a 4-frame one, and more steps teach more.
    finetune_frames: int = 12
    extra_train: tuple[str, ...] = field(default_factory=tuple)
    # Pre-training epochs (None = the recipe's 10): set when max_steps would outrun 10 epochs, so
    # the cosine schedule spans the steps actually run.
    pretrain_epochs: int | None = None
    # The fraction of the MSR-VTT-style test set made of near-duplicate distractors (one of
    # direction, speed, size changed; docs/data.md, "Synthetic corpora").
    msrvtt_near: float = 0.0
    bank_videos: int = 64  # training videos encoded as dbnorm's video bank


SIZES = {
    # The embedded default: ~15 min on 2 cores. Its MSR-VTT-style test set is 300 videos, 30% of
    # them near duplicates of another (chance R@1 = 0.3%): 100 distinct videos left every fusion
    # at R@5 ~99 and R@10 100, where no fusion can be told from another (docs/results.md).
    "full": DemoSize(
        webvid=600, msrvtt=800, msrvtt_test=300, anet=400, pretrain_steps=300,
        finetune_steps=200, batch_size=16, image_size=112, eval_k=32, finetune_frames=4,
        msrvtt_near=0.3,
    ),
    # The end-to-end test inside `make test`: every stage, small.
    "quick": DemoSize(
        webvid=48, msrvtt=64, msrvtt_test=16, anet=40, pretrain_steps=60,
        finetune_steps=40, batch_size=8, image_size=64, eval_k=12, finetune_frames=4,
    ),
}  # fmt: skip

# The GPU recipe (`make demo` when CUDA is present; docs/results.md, "The GPU recipe (`make demo`
# with CUDA)"): the same tiny model, ~7x the steps at 4x the batch of the CPU demo (~25x the
# samples) and time-reversed negatives, sized from the direction probe on an H200 (direction learnt
# to 0.81 in ~3,000 supervised steps at batch 64), aiming at <= 10 minutes; corpora small enough
# that their shards travel to a GPU box built elsewhere (scripts/device_check.sh).
_GPU_EXTRA = ("loss.reverse=0.25", "data.num_workers=6")
GPU_SIZES = {
    "full": DemoSize(
        webvid=1200, msrvtt=800, msrvtt_test=100, anet=40, pretrain_steps=2000,
        finetune_steps=1000, batch_size=64, image_size=112, eval_k=32, finetune_frames=4,
        extra_train=_GPU_EXTRA, pretrain_epochs=107,
    ),
    # The GPU recipe's code path at a CPU-friendly size (its dry run, `--recipe gpu --size quick`).
    "quick": DemoSize(
        webvid=48, msrvtt=64, msrvtt_test=16, anet=40, pretrain_steps=30, finetune_steps=12,
        batch_size=8, image_size=64, eval_k=12, finetune_frames=6,
        extra_train=("loss.reverse=0.25", "data.num_workers=1"), pretrain_epochs=5,
    ),
}  # fmt: skip
RECIPES = {"cpu": SIZES, "gpu": GPU_SIZES}
STAGES = ("shards", "pretrain", "finetune", "evaluate")


def pick_recipe(recipe: str, cuda: bool) -> str:
    """``auto`` = the GPU recipe when CUDA is present, else the CPU one (unchanged)."""
    if recipe == "auto":
        return "gpu" if cuda else "cpu"
    if recipe not in RECIPES:
        raise ValueError(f"--recipe must be auto, cpu or gpu, got {recipe!r}")
    return recipe


class Demo:
    """Runs the stages in order, recording commands and timings."""

    # a line per this many seconds while a stage runs (docs/training.md, "Progress")
    heartbeat_s = 20.0

    def __init__(
        self, run: Path, size: DemoSize, workers: int = 2, log=print, recipe: str = "cpu"
    ) -> None:
        self.run = run
        self.recipe = recipe
        self.size = size
        self.workers = workers
        self.log = log
        self.data = run / "data"
        self.shards = run / "shards"
        self.commands: list[str] = []
        # Seconds per stage; kept in <run>/timings.json, so a run split with --stages (shards
        # on one machine, training on another, or a re-run evaluation) reports every stage.
        self.timings: dict[str, float] = {}
        saved = run / "timings.json"
        if saved.is_file():
            self.timings = {k: float(v) for k, v in json.loads(saved.read_text()).items()}
        self._timed: set[str] = set()  # stages timed by this process (their old time dropped)

    def sh(self, stage: str, script: str, *args: str) -> None:
        """Run ``scripts/<script>`` with ``args``; a failure stops the demo with its output."""
        cmd = [sys.executable, str(ROOT / "scripts" / script), *args]
        shown = " ".join(shlex.quote(c) for c in [f"scripts/{script}", *args])
        self.commands.append(f"python {shown}")
        self.log(f"[demo] {stage}: python {shown}")
        start = time.perf_counter()
        returncode, stdout, stderr = self._run_with_heartbeat(stage, cmd, start)
        before = self.timings.get(stage, 0.0) if stage in self._timed else 0.0
        self.timings[stage] = before + time.perf_counter() - start
        self._timed.add(stage)
        self.run.mkdir(parents=True, exist_ok=True)
        (self.run / "timings.json").write_text(json.dumps(self.timings, indent=1) + "\n")
        (self.run / "logs").mkdir(parents=True, exist_ok=True)
        with open(self.run / "logs" / f"{stage}.log", "a") as f:
            f.write(f"$ python {shown}\n{stdout}\n{stderr}\n")
        if returncode != 0:
            tail = "\n".join((stdout + stderr).strip().splitlines()[-25:])
            raise RuntimeError(f"stage {stage!r} failed (exit {returncode}):\n{tail}")

    def _run_with_heartbeat(self, stage: str, cmd: list[str], start: float) -> tuple[int, str, str]:
        """Run ``cmd`` capturing its output; every ``heartbeat_s`` print one line with the
        stage's elapsed time and the child's latest progress (its bar: step, loss, ETA)."""
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        chunks: dict[str, list[bytes]] = {"out": [], "err": []}
        readers = [
            threading.Thread(target=_drain, args=(proc.stdout, chunks["out"]), daemon=True),
            threading.Thread(target=_drain, args=(proc.stderr, chunks["err"]), daemon=True),
        ]
        for r in readers:
            r.start()
        while True:
            try:
                proc.wait(timeout=self.heartbeat_s)
                break
            except subprocess.TimeoutExpired:
                minutes, seconds = divmod(int(time.perf_counter() - start), 60)
                latest = _latest_line(chunks["err"]) or _latest_line(chunks["out"]) or "running"
                self.log(f"[demo] {stage} {minutes}m{seconds:02d}s: {latest}")
        for r in readers:
            r.join()
        text = {k: b"".join(v).decode(errors="replace") for k, v in chunks.items()}
        return proc.returncode, text["out"], text["err"]

    # -- stages --------------------------------------------------------------------------------
    def build_shards(self) -> None:
        s = self.size
        common = ["--workers", str(self.workers), "--short-side", str(s.image_size), "--quiet"]
        for dataset, count, split in (
            ("webvid", s.webvid, None),
            ("msrvtt", s.msrvtt, None),
            ("anet", s.anet, "val"),
        ):
            args = ["--dataset", dataset, "--data", str(self.data / dataset)]
            args += ["--out", str(self.shards), "--synthetic", "--synthetic-size", str(count)]
            if dataset == "msrvtt":
                args += ["--synthetic-test-size", str(s.msrvtt_test)]
                if s.msrvtt_near:
                    args += ["--synthetic-near-duplicates", str(s.msrvtt_near)]
            args += common
            if split:
                args += ["--split", split]
            self.sh("shards", "build_shards.py", *args)

    def _train_args(self) -> list[str]:
        s = self.size
        return [
            f"data.batch_size={s.batch_size}",
            f"model.image_size={s.image_size}",
            "data.hflip=false",  # captions say "left"/"right": a flipped video would contradict them
            "data.crop_scale=[0.8,1.0]",  # keep the moving shape in view in every frame
            f"eval.k={s.eval_k}",
            *s.extra_train,
        ]

    def pretrain(self) -> None:
        s = self.size
        self.sh(
            "pretrain", "train.py", "--task", "pretrain", "--preset", "tiny",
            "--run-dir", str(self.run / "pretrain"),
            f"data.sources.webvid.dir={self.shards / 'webvid' / 'train_4f'}",
            "data.sources.cc3m=null", f"train.max_steps={s.pretrain_steps}",
            f"train.ckpt_every_steps={max(s.pretrain_steps // 2, 1)}",
            *([f"optim.epochs={s.pretrain_epochs}"] if s.pretrain_epochs else []),
            *self._train_args(),
        )  # fmt: skip

    def finetune(self) -> None:
        s = self.size
        self.sh(
            "finetune", "train.py", "--task", "finetune-msrvtt", "--preset", "tiny",
            "--ckpt", str(self.run / "pretrain" / "last.pt"),
            "--run-dir", str(self.run / "finetune-msrvtt"),
            f"data.sources.msrvtt.dir={self.shards / 'msrvtt' / 'train_12f'}",
            f"data.sources.msrvtt.num_frames={s.finetune_frames}",
            f"eval.shards={self.shards / 'msrvtt' / 'test_12f'}",
            f"train.max_steps={s.finetune_steps}",
            f"optim.epochs={math.ceil(s.finetune_steps * s.batch_size / s.msrvtt)}",
            f"train.ckpt_every_steps={s.finetune_steps}",
            *self._train_args(),
        )  # fmt: skip

    def evaluate(self) -> None:
        ckpt = self.run / "finetune-msrvtt" / "best.pt"
        if not ckpt.is_file():
            ckpt = self.run / "finetune-msrvtt" / "last.pt"
        for dataset in ("msrvtt", "anet"):
            # MSR-VTT-style: the train captions are the inductive methods' bank, and some train
            # videos dbnorm's (docs/evaluation.md, "Which fusion?"); the ActivityNet-style corpus
            # has no train shards here.
            bank = ["eval.bank=train", f"eval.bank_videos={self.size.bank_videos}"]
            self.sh(
                f"eval-{dataset}", "evaluate.py", "--dataset", dataset, "--preset", "tiny",
                "--ckpt", str(ckpt), "--run-dir", str(self.run), "--shards", str(self.shards),
                "--k", str(self.size.eval_k), *(bank if dataset == "msrvtt" else []),
            )  # fmt: skip

    def run_all(self, stages: tuple[str, ...] = STAGES) -> dict[str, Any]:
        """Every stage in order; a subset (e.g. shards built elsewhere) skips the others."""
        self.run.mkdir(parents=True, exist_ok=True)
        bad = sorted(set(stages) - set(STAGES))
        if bad:
            raise RuntimeError(f"unknown demo stage(s) {bad}; choose from {', '.join(STAGES)}")
        if "shards" not in stages:
            need = self.shards / "webvid" / "train_4f" / "manifest.json"
            if not need.is_file():
                raise RuntimeError(f"{need} missing: run the shards stage first (--stages shards)")
        for name in STAGES:
            if name in stages:
                {"shards": self.build_shards, "pretrain": self.pretrain,
                 "finetune": self.finetune, "evaluate": self.evaluate}[name]()  # fmt: skip
        if "evaluate" not in stages:
            return {"stages": list(stages), "timings": self.timings}
        start = time.perf_counter()
        metrics = write_report(self)
        self.timings["report"] = time.perf_counter() - start
        metrics["timings"] = self.timings
        (self.run / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        return metrics


# -- report ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Evaluated:
    """One evaluated dataset as the report reads it: its result JSON, its scores and ranks."""

    result: dict[str, Any]
    arrays: dict[str, np.ndarray]
    gt: list[list[int]]
    ranks: dict[str, np.ndarray]  # fusion -> 1-based rank of each text's best ground truth


def _load_evaluations(run: Path) -> dict[str, _Evaluated]:
    """The demo's two evaluations, each score file read once."""
    out = {}
    for dataset, split in (("msrvtt", "test"), ("anet", "val")):
        result = json.loads((run / "eval" / f"{dataset}_{split}.json").read_text())
        arrays, gt = load_scores(run / "eval" / f"{dataset}_{result['split']}_scores.npz")
        ranks = {f: best_ranks(arrays[f"t2v_{f}"], gt) for f in FUSION_LABELS}
        out[dataset] = _Evaluated(result, arrays, gt, ranks)
    return out


def _temporal(demo: Demo, ev: _Evaluated) -> dict[str, Any]:
    """Twin preference of the stage-1 scores and of each fusion (docs/results.md, "Known gap:
    frame order")."""
    keys = [str(k) for k in ev.arrays["video_keys"]]
    pairs = twin_pairs(demo.data / "msrvtt" / "synthetic_attributes.json", keys)
    rows = [(t, v) for t, vs in enumerate(ev.gt) for v in vs]
    out = {"stage1": twin_preference(ev.arrays["stage1"], rows, pairs)}
    for fusion in FUSION_LABELS:
        out[fusion] = twin_preference(ev.arrays[f"t2v_{fusion}"], rows, pairs)
    return out


def _intro_lines(demo: Demo, results: dict[str, dict[str, Any]]) -> list[str]:
    s = demo.size
    return [
        "# T2V2T demo report",
        "",
        "The whole pipeline on the built-in synthetic corpora (moving coloured shapes; captions "
        "name colour, shape, size, background, direction and speed), tiny preset on "
        f"{'CPU' if demo.recipe == 'cpu' else 'GPU (the GPU recipe)'}: "
        "synthetic WebVid/MSR-VTT/ActivityNet corpora → Dask shard builds → pre-training → "
        "fine-tuning on the MSR-VTT-style train split → two-stage retrieval with all three fusions.",
        "",
        f"Sizes: WebVid {s.webvid} videos, MSR-VTT {s.msrvtt} train + "
        f"{results['msrvtt']['num_videos']} test videos, ActivityNet "
        f"{results['anet']['num_videos']} val videos (paragraphs, 32 frames); "
        f"pre-training {s.pretrain_steps} steps, fine-tuning {s.finetune_steps} "
        f"steps, batch {s.batch_size}, {s.image_size}² frames, k = {s.eval_k}. "
        + _test_set_line(demo),
        "",
    ]


def _dataset_lines(run: Path, dataset: str, res: dict[str, Any]) -> list[str]:
    """One evaluation's table: every fusion in both directions."""
    lines = [
        f"## {DATASET_LABELS[dataset]} ({res['split']}: {res['num_texts']} texts × "
        f"{res['num_videos']} videos, chance R@1 = {100 / res['num_videos']:.1f})",
        "",
        "| Method | dir | " + " | ".join(COLUMNS) + " | MdR | MnR |",
        "|---|---|" + "---|" * (len(COLUMNS) + 2),
    ]
    for fusion, name in FUSION_LABELS.items():
        for direction in ("t2v", "v2t"):
            m = res["results"][fusion][direction]
            cells = " | ".join(f"{m[c]:.1f}" for c in COLUMNS)
            lines.append(f"| {name} | {direction} | {cells} | {m['MdR']:.1f} | {m['MnR']:.1f} |")
    lines += ["", f"{res['pair_evaluations']} VTM pair evaluations, {res['seconds']:.1f} s.", ""]
    page = Path("eval") / f"{dataset}_{res['split']}.html"
    if (run / page).is_file():
        lines += [
            f"What each fusion retrieves, with frame strips: [{page}]({page.as_posix()}) "
            "(self-contained HTML; open it in a browser).",
            "",
        ]
    return lines


# The range where fusions can be told apart (docs/results.md): every fusion's text->video R@1
# within 15-75 and R@5 at most 92 on the MSR-VTT-style test set.
BAND_R1 = (15.0, 75.0)
BAND_R5_MAX = 92.0


def off_ceiling(res: dict[str, Any]) -> dict[str, Any]:
    """Whether every fusion's text->video R@1 lies in :data:`BAND_R1` and R@5 <= 92."""
    rows = {f: res["results"][f]["t2v"] for f in FUSION_LABELS}
    ok = {
        f: BAND_R1[0] <= m["R1"] <= BAND_R1[1] and m["R5"] <= BAND_R5_MAX for f, m in rows.items()
    }
    return {
        "r1_range": list(BAND_R1),
        "r5_max": BAND_R5_MAX,
        "fusions": ok,
        "all": all(ok.values()),
    }


def _band_lines(band: dict[str, Any]) -> list[str]:
    lo, hi = band["r1_range"]
    verdict = (
        "yes"
        if band["all"]
        else "no: " + ", ".join(FUSION_LABELS[f] for f, ok in band["fusions"].items() if not ok)
    )
    return [
        f"Off the ceiling (every fusion's MSR-VTT-style R@1 within {lo:.0f}–{hi:.0f} and R@5 ≤ "
        f"{band['r5_max']:.0f}, so the fusions have room to differ): {verdict}.",
        "",
    ]


def _test_set_line(demo: Demo) -> str:
    """The MSR-VTT-style test set's make-up, from the synthetic corpus' attributes."""
    path = demo.data / "msrvtt" / "synthetic_attributes.json"
    if not path.is_file():
        return ""
    test = [a for a in json.loads(path.read_text()).values() if a["split"] == "test"]
    near = sum(1 for a in test if a.get("near_duplicate_of"))
    twins = sum(1 for a in test if a.get("twin")) // 2
    return (
        f"The MSR-VTT-style test set holds {len(test)} videos: {twins} direction-twin pairs and "
        f"{near} near duplicates (a copy of another test video with one of direction, speed or "
        "size changed)."
    )


def _temporal_lines(temporal: dict[str, Any]) -> list[str]:
    lines = [
        "## Temporal check",
        "",
        "Among the MSR-VTT-style test videos are direction twins: a video and its frames in reverse "
        "order (same shape, colour, size, background and speed; opposite direction). For every "
        "caption of a twin, does the model score its own video above the twin? Only frame order "
        "can tell them apart, so chance is 0.5.",
        "",
        "| scores | twin pairs | captions | preferred own video |",
        "|---|---|---|---|",
    ]
    for name, t in temporal.items():
        label = "stage 1 (dual encoder)" if name == "stage1" else FUSION_LABELS[name]
        lines.append(f"| {label} | {t['pairs']} | {t['trials']} | {t['rate']:.2f} |")
    return [*lines, ""]


def _closing_lines(demo: Demo, pngs: dict[str, Path]) -> list[str]:
    """Figures, the stage timings and the commands that reproduce the run."""
    return [
        "## Curves",
        "",
        f"![pre-training]({pngs['pretrain'].name}) ![fine-tuning]({pngs['finetune-msrvtt'].name})",
        "",
        f"![recall@K]({pngs['recall'].name})",
        "",
        "## Timings",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.1f} |" for k, v in demo.timings.items()],
        f"| total | {sum(demo.timings.values()):.1f} |",
        "",
        "## Reproduce",
        "",
        "```bash",
        *demo.commands,
        "```",
        "",
    ]


def write_report(demo: Demo) -> dict[str, Any]:
    """``report.md`` and its PNGs from the evaluation outputs; returns the metrics to save."""
    run = demo.run
    evals = _load_evaluations(run)
    results = {d: ev.result for d, ev in evals.items()}
    pngs = {name: plot_run(run / name, run / f"curves_{name}.png")
            for name in ("pretrain", "finetune-msrvtt")}  # fmt: skip
    pngs["recall"] = plot_recall(
        run / "recall_at_k.png",
        {d: ev.ranks for d, ev in evals.items()},
        {d: ev.arrays["t2v_none"].shape[1] for d, ev in evals.items()},
    )
    temporal = _temporal(demo, evals["msrvtt"])
    lines = _intro_lines(demo, results)
    for dataset, res in results.items():
        lines += _dataset_lines(run, dataset, res)
    ranks = {d: ev.ranks for d, ev in evals.items()}
    table = ablation_markdown(results, list(results), ranks=ranks)
    lines += ["## Ablation (text→video)", "", table, ""]
    band = off_ceiling(results["msrvtt"])
    lines += _band_lines(band)
    posthoc = posthoc_markdown(results, list(results))
    if posthoc:
        lines += ["## Every post-hoc method (text→video R@1)", "", posthoc, ""]
    lines += _temporal_lines(temporal)
    lines += _closing_lines(demo, pngs)
    (run / "report.md").write_text("\n".join(lines))
    return {**results, "temporal": temporal, "band": band}
