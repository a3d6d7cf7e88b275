"""`make bench-gpu`: one GPU, the paper's shapes: training throughput, GPU JPEG decode, evaluation.

Phases (each sized by step counts and capped in seconds; the whole run stays inside ``--budget``):

1. ``train-ceiling``: the paper's pre-training step (base preset, random init, batch 64 per GPU,
   4 frames, 224x224, bf16 autocast, SDPA attention, VTC+VTM+MLM, AdamW) on in-memory batches:
   samples/s and peak memory. This is the ceiling: no data loading at all.
2. ``train-loader``: the same step fed by the real loader (``make_train_loader``) from zstd
   shards with ``--workers`` workers, decoding on CPU in the workers; its rate over the ceiling
   shows whether loading holds the GPU back (target >= 0.95).
3. ``train-loader-gpu-decode``: the same with ``data.decode_device=cuda`` (JPEGs decoded on the
   GPU in batches, :mod:`t2v2t.data.gpu_decode`).
4. ``finetune-ceiling``: the fine-tuning step (12 frames, batch 32, VTC+VTM).
5. ``jpeg``: decode + crop + resize of the same JPEG bytes, frames/s: the CPU path
   (libjpeg-turbo, one core) beside the batched GPU path (nvJPEG through ``decode_jpeg``).
6. ``eval``: an MSR-VTT-size evaluation (1,000 texts x 1,000 videos, 12 frames, k = 128), base
   preset, random weights, shared pairs vs VindLU's two passes: seconds and pair counts.
7. ``train-ceiling-compiled``: phase 1 under ``torch.compile`` (skipped when the budget left
   is too small for the compilation).

Shards are written directly (textured JPEG frames at WebVid's stored size, 398x224; no video
decoding), so the run needs neither ffmpeg nor Dask. With CUDA the headline keys go into
``bench/results.json``: ``gpu_name``, ``train_samples_per_s_base``, ``train_loader_vs_ceiling``,
``gpu_jpeg_frames_per_s``, ``eval_msrvtt_size_seconds``, ``eval_time_ratio_two_pass_vs_shared``.
``--quick`` is a CPU dry run at tiny sizes (tiny preset, a few steps, a 6-video evaluation,
``torch.compile`` with the eager backend) that runs every phase and writes its figures to
``runs/bench_gpu_quick.json`` only: a test of this script, not a measurement.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a plain script from anywhere

from t2v2t.errors import ArgumentParser, cli  # noqa: E402
from t2v2t.tools.benchlog import BENCH_DIR, machine, record  # noqa: E402

VINDLU_V100_SAMPLES_PER_S = 5.5e6 * 10 / (15 * 86400)  # 15 V100-days, 10 epochs, 5.5M pairs


@dataclass(frozen=True)
class Sizes:
    preset: str
    batch: int  # pre-training batch per GPU
    frames: int
    ft_batch: int
    ft_frames: int
    warmup: int
    steps: int  # timed steps per training phase (fewer if the phase cap is reached)
    train_samples: int  # samples in the training shards
    stored: tuple[int, int]  # stored frame (height, width)
    eval_videos: int
    eval_frames: int
    k: int
    jpeg_rounds: int
    phase_cap_s: float


FULL = Sizes("base", 64, 4, 32, 12, 3, 20, 2048, (224, 398), 1000, 12, 128, 5, 60.0)
QUICK = Sizes("tiny", 2, 2, 2, 3, 1, 2, 16, (48, 80), 6, 3, 4, 1, 30.0)


def log(msg: str) -> None:
    print(f"[bench-gpu {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- synthetic shards (no video decoding: JPEG frames written straight into the schema) --------
def _jpeg_pool(n: int, hw: tuple[int, int], seed: int = 0) -> list[bytes]:
    """``n`` distinct textured frames (gradient + noise, quality 90): realistic JPEG sizes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = hw
    ramp = np.linspace(0, 180, w)[None, :, None] + np.linspace(0, 60, h)[:, None, None]
    out = []
    for i in range(n):
        img = ramp + rng.normal(0, 30, (h, w, 3)) + 20 * np.sin(np.arange(w) / (3 + i % 7))[:, None]
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def write_shards(
    out: Path, *, split: str, count: int, frames: int, candidates: int, hw: tuple[int, int]
) -> Path:
    """A shard folder of ``count`` samples (one caption each) in the project's schema."""
    from t2v2t.data.frames import frame_indices
    from t2v2t.data.schema import FORMAT, SampleMeta, encode_sample
    from t2v2t.data.shards import info_dict, shard_name, write_manifest, write_shard

    mode = "rand" if split == "train" else "middle"
    pool = _jpeg_pool(64, hw)
    out.mkdir(parents=True, exist_ok=True)
    infos, samples = [], []
    for k in range(count):
        key = f"{split}{k:05d}"
        segs = frame_indices(frames, 120, mode, key, seed=0, candidates=candidates)
        meta = SampleMeta(
            key=key, dataset="msrvtt" if split == "test" else "webvid", split=split,
            source=f"{key}.mp4", captions=[f"a person does thing number {k} in a room"],
            fps=30.0, vlen=120, duration=4.0, frame_indices=segs,
            sampling={"mode": mode, "num_frames": frames, "candidates": candidates, "seed": 0},
            size=list(hw),
        )  # fmt: skip
        jpegs = [pool[(7 * k + j) % len(pool)] for j, _ in enumerate(i for s in segs for i in s)]
        samples.append(encode_sample(meta, jpegs))
        if len(samples) == 64 or k == count - 1:
            name = shard_name(meta.dataset, split, len(infos))
            infos.append(write_shard(out / name, samples))
            samples = []
    write_manifest(
        out,
        {
            "format": FORMAT, "dataset": meta.dataset, "split": split, "num_frames": frames,
            "mode": mode, "candidates": candidates, "seed": 0, "short_side": hw[0],
            "jpeg_quality": 90, "num_samples": count, "num_failed": 0,
            "shards": [info_dict(i) for i in infos], "created_with": {"bench_gpu": True},
        },
    )  # fmt: skip
    return out


# -- training phases --------------------------------------------------------------------------
class Trainer:
    """One model + optimiser for a task's recipe, stepping on given batches."""

    def __init__(self, task: str, preset: str, device: torch.device, extra: list[str]) -> None:
        from t2v2t.models.start import build_for_training
        from t2v2t.training.config import load_config
        from t2v2t.training.loop import autocast_dtype, model_spec, seed_everything
        from t2v2t.training.objective import Objective
        from t2v2t.training.optim import build_optimizer

        over = ["model.init=random", "train.init_checkpoint=null", *extra]
        self.cfg = load_config(task, preset, over)
        seed_everything(0)
        self.model = build_for_training(model_spec(self.cfg)).to(device).train()
        self.objective = Objective.from_config(self.model, self.cfg.loss)
        self.step_module: torch.nn.Module = self.objective
        o = self.cfg.optim
        self.opt = build_optimizer(
            self.model, o.lr, o.weight_decay, (o.betas[0], o.betas[1]), o.eps
        )
        self.device = device
        self.amp = autocast_dtype(self.cfg, device)

    def compile(self, backend: str, scope: str) -> None:
        """``scope`` model: the whole forward (MLM masking and hard-negative sampling break it
        into ~10 graphs); encoders: the vision, text and fusion encoders, which hold nearly all
        of the compute and compile as single graphs, in place."""
        if scope == "model":
            self.step_module = torch.compile(self.objective, backend=backend)
        else:
            for name in ("vision", "text", "fusion"):
                getattr(self.model, name).compile(backend=backend)

    def step(self, batch: dict[str, Any]) -> float:
        from t2v2t.training.loop import forward_loss

        out = forward_loss(self.step_module, batch, self.device, self.amp)
        self.opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        self.opt.step()
        return float(out["loss"].detach())  # a sync point: the step is done


def synthetic_batch(model: torch.nn.Module, batch: int, frames: int, text_len: int = 32) -> dict:
    g = torch.Generator().manual_seed(0)
    size = model.config.image_size
    ids = torch.randint(1000, model.config.vocab_size, (batch, text_len), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    frames_t = torch.randint(0, 256, (batch, frames, 3, size, size), dtype=torch.uint8, generator=g)
    return {"frames": frames_t, "input_ids": ids, "attention_mask": torch.ones_like(ids),
            "video_ids": torch.arange(batch)}  # fmt: skip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return (
        round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None
    )


def timed_steps(
    trainer: Trainer, batches: Iterator[dict], *, warmup: int, steps: int, cap_s: float, name: str
) -> dict[str, Any]:
    """Warm-up steps (untimed), then up to ``steps`` timed ones or until ``cap_s`` has passed."""
    dev = trainer.device
    _peak_reset(dev)
    t0 = time.perf_counter()
    for _ in range(warmup):
        trainer.step(next(batches))
    warm_s = time.perf_counter() - t0
    _sync(dev)
    samples, done, t0 = 0, 0, time.perf_counter()
    while done < steps and time.perf_counter() - t0 < cap_s:
        batch = next(batches)
        samples += int(batch["input_ids"].shape[0])
        trainer.step(batch)
        done += 1
    _sync(dev)
    seconds = time.perf_counter() - t0
    rate = samples / seconds if seconds > 0 else 0.0
    log(f"{name}: {rate:.1f} samples/s ({done} steps in {seconds:.1f} s, warm-up {warm_s:.1f} s)")
    return {"samples_per_s": round(rate, 2), "steps": done, "seconds": round(seconds, 3),
            "warmup_steps": warmup, "warmup_seconds": round(warm_s, 2),
            "peak_memory_gib": _peak_gib(dev)}  # fmt: skip


def repeat(batch: dict) -> Iterator[dict]:
    while True:
        yield batch


def loader_batches(
    shards: Path, tokenizer: Any, *, batch: int, frames: int, image_size: int, workers: int,
    device: torch.device, decode_device: str | None,
) -> Iterator[dict]:  # fmt: skip
    """The real training loader over the shards, epoch after epoch."""
    from t2v2t.data.loader import TrainSource, make_train_loader

    epoch = 0
    while True:
        loader = make_train_loader(
            [TrainSource(shards, batch, frames)], tokenizer, seed=0, epoch=epoch,
            num_workers=workers, image_size=image_size, pin_memory=device.type == "cuda",
            decode_device=decode_device,
        )  # fmt: skip
        yield from loader
        epoch += 1


# -- JPEG decode ------------------------------------------------------------------------------
def jpeg_rates(shards: Path, *, videos: int, frames: int, size: int, rounds: int,
               device: torch.device) -> dict[str, Any]:  # fmt: skip
    """Decode + crop + resize of the same videos' JPEGs: CPU path (one core) vs batched device."""
    from t2v2t.data.augment import decode_jpegs, train_crop
    from t2v2t.data.gpu_decode import decode_batch, pack_jpegs
    from t2v2t.data.schema import decode_sample
    from t2v2t.data.shards import iter_samples, read_manifest

    todo: list[tuple[list[bytes], Any]] = []
    for info in read_manifest(shards)["shards"]:
        for raw in iter_samples(shards / info["name"]):
            meta, jpegs = decode_sample(raw)
            todo.append((jpegs[:frames], train_crop(*meta.size, 0, 0, meta.key)))
            if len(todo) == videos:
                break
        if len(todo) == videos:
            break
    n = len(todo) * frames
    buf = np.empty((len(todo), frames, size, size, 3), dtype=np.uint8)
    best_cpu = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        for i, (jpegs, crop) in enumerate(todo):
            decode_jpegs(jpegs, crop, size, buf[i])
        best_cpu = max(best_cpu, n / (time.perf_counter() - t0))
    data, offsets = pack_jpegs([j for j, _ in todo])
    crops = [c for _, c in todo]

    def one() -> torch.Tensor:
        b = {"jpeg_data": data, "jpeg_offsets": offsets, "crops": crops, "frame_size": size,
             "num_frames": frames, "keys": [str(i) for i in range(len(todo))]}  # fmt: skip
        return decode_batch(b, device)["frames"]

    one()  # warm-up: nvJPEG handles, allocator
    best_dev = 0.0
    for _ in range(rounds):
        _sync(device)
        t0 = time.perf_counter()
        out = one()
        _sync(device)
        best_dev = max(best_dev, n / (time.perf_counter() - t0))
    diff = (out.cpu().permute(0, 1, 3, 4, 2).int() - torch.from_numpy(buf).int()).abs()
    log(f"jpeg: CPU path {best_cpu:.0f} frames/s (one core), {device} batched {best_dev:.0f}")
    return {"cpu_frames_per_s_one_core": round(best_cpu, 1),
            "device_frames_per_s": round(best_dev, 1), "device": str(device),
            "frames_per_batch": n,
            "max_abs_diff_vs_cpu": int(diff.max()), "mean_abs_diff_vs_cpu":
            round(float(diff.float().mean()), 3), "rounds": rounds}  # fmt: skip


# -- evaluation -------------------------------------------------------------------------------
def eval_phase(shards: Path, preset: str, device: torch.device, k: int) -> dict[str, Any]:
    from t2v2t.models import build_model, build_tokenizer
    from t2v2t.retrieval.evaluate import evaluate_retrieval
    from t2v2t.retrieval.settings import EvalConfig

    torch.manual_seed(0)
    frames = json.loads((shards / "manifest.json").read_text())["num_frames"]
    model = build_model(preset, "random", overrides={"num_frames": frames}).to(device).eval()
    tokenizer = build_tokenizer(preset)
    out: dict[str, Any] = {}
    for pairing in ("shared", "two_pass"):
        _peak_reset(device)
        t0 = time.perf_counter()
        settings = EvalConfig(dataset="msrvtt", split="test", shards=str(shards), k=k,
                              batch_size=32, pairing=pairing)  # fmt: skip
        res = evaluate_retrieval(model, tokenizer, settings, device=device)
        _sync(device)
        sec = time.perf_counter() - t0
        out[pairing] = {"seconds": round(sec, 2), "pairs": res["pair_evaluations"],
                        "timings": res["timings"], "peak_memory_gib": _peak_gib(device)}  # fmt: skip
        log(f"eval {pairing}: {sec:.1f} s, {res['pair_evaluations']} VTM pairs, {res['timings']}")
    out.update(num_texts=res["num_texts"], num_videos=res["num_videos"], num_frames=frames, k=k)
    del model
    return out


# -- main -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
        epilog="example: python scripts/bench_gpu.py --quick  (make bench-gpu)",
    )
    p.add_argument("--quick", action="store_true", help="CPU dry run at tiny sizes")
    p.add_argument("--workers", type=int, default=0, help="loader workers (0 = cores - 2, max 12)")
    p.add_argument("--budget", type=float, default=480.0, help="seconds for the whole run")
    p.add_argument("--out", default="", help="also write the results JSON here")
    p.add_argument("--work", default="", help="keep the generated shards here")
    p.add_argument("--compile-scope", choices=["encoders", "model"], default="encoders",
                   help="what torch.compile wraps in the compiled phase")  # fmt: skip
    p.add_argument("--skip", default="", help="comma-separated phases to skip (e.g. compile)")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cuda = torch.cuda.is_available() and not args.quick
    if not cuda and not args.quick:
        print("error: bench_gpu needs CUDA; --quick runs the CPU dry run", file=sys.stderr)
        return 2
    s = QUICK if args.quick else FULL
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    workers = args.workers or max(1, min(12, (os.cpu_count() or 2) - 2))
    if args.quick:
        workers = 1
    decode_device = "cuda" if cuda else "cpu"
    skip = set(filter(None, args.skip.split(",")))
    start = time.perf_counter()

    def left() -> float:
        return args.budget - (time.perf_counter() - start)

    results: dict[str, Any] = {"sizes": s.__dict__ | {"stored": list(s.stored)}, "phases": {}}
    phases = results["phases"]

    def phase(name: str, fn: Callable[[], dict[str, Any]], need_s: float = 0.0) -> None:
        if name in skip or any(name.startswith(x + "-") for x in skip):
            phases[name] = {"skipped": "--skip"}
            return
        if left() < need_s:
            phases[name] = {"skipped": f"budget: {left():.0f} s left, needs ~{need_s:.0f} s"}
            log(f"{name}: skipped ({phases[name]['skipped']})")
            return
        log(f"{name} ... ({left():.0f} s of the budget left)")
        t0 = time.perf_counter()
        phases[name] = fn() | {"phase_seconds": round(time.perf_counter() - t0, 1)}

    from t2v2t.models import build_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        log(f"device {device}, workers {workers}, writing shards under {work}")
        t0 = time.perf_counter()
        train_dir = work / "train"
        if not (train_dir / "manifest.json").is_file():
            write_shards(train_dir, split="train", count=s.train_samples, frames=s.frames,
                         candidates=2, hw=s.stored)  # fmt: skip
        eval_dir = work / "test"
        if not (eval_dir / "manifest.json").is_file():
            write_shards(eval_dir, split="test", count=s.eval_videos, frames=s.eval_frames,
                         candidates=1, hw=s.stored)  # fmt: skip
        results["shards_seconds"] = round(time.perf_counter() - t0, 1)
        log(f"shards written in {results['shards_seconds']} s")
        tokenizer = build_tokenizer(s.preset)
        pre = Trainer("pretrain", s.preset, device, [])
        size = pre.model.config.image_size
        steps = dict(warmup=s.warmup, steps=s.steps, cap_s=s.phase_cap_s)
        ceiling = repeat(synthetic_batch(pre.model, s.batch, s.frames))
        phase("train-ceiling", lambda: timed_steps(pre, ceiling, name="ceiling", **steps))
        for name, dec in (("train-loader", None), ("train-loader-gpu-decode", decode_device)):
            phase(name, lambda dec=dec, name=name: timed_steps(
                pre, loader_batches(train_dir, tokenizer, batch=s.batch, frames=s.frames,
                                    image_size=size, workers=workers, device=device,
                                    decode_device=dec),
                name=name, **steps) | {"workers": workers, "decode_device": dec or "workers"},
                need_s=20)  # fmt: skip
        phase("jpeg", lambda: jpeg_rates(train_dir, videos=s.batch * 4, frames=s.frames,
                                         size=size, rounds=s.jpeg_rounds, device=device))  # fmt: skip

        def finetune() -> dict[str, Any]:
            ft = Trainer("finetune-msrvtt", s.preset, device, [])
            batch = repeat(synthetic_batch(ft.model, s.ft_batch, s.ft_frames))
            out = timed_steps(ft, batch, name="finetune ceiling", **steps)
            del ft
            return out | {"batch": s.ft_batch, "frames": s.ft_frames}

        phase("finetune-ceiling", finetune, need_s=20)
        phase("eval", lambda: eval_phase(eval_dir, s.preset, device, s.k), need_s=60)

        def compiled() -> dict[str, Any]:
            backend = "inductor" if cuda else "eager"  # eager: the CPU dry run traces only
            pre.compile(backend, args.compile_scope)
            out = timed_steps(pre, ceiling, name="ceiling, torch.compile", **steps)
            return out | {"backend": backend, "scope": args.compile_scope}

        phase("train-ceiling-compiled", compiled, need_s=150 if cuda else 0)

    results["total_seconds"] = round(time.perf_counter() - start, 1)
    figures = headline(phases, device)
    results["figures"] = figures
    table = markdown(phases, figures, s, workers, device)
    results["summary"] = table
    print(table)
    if cuda:
        record("gpu", figures, {k: v for k, v in results.items() if k != "figures"},
               bench_dir=BENCH_DIR)  # fmt: skip
        log(f"recorded into {BENCH_DIR / 'results.json'}")
    out = Path(args.out) if args.out else (None if cuda else ROOT / "runs" / "bench_gpu_quick.json")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"machine": machine(), **results}, indent=1) + "\n")
        log(f"results written to {out}")
    return 0


def _get(phases: dict, name: str, key: str) -> float | None:
    v = phases.get(name, {}).get(key)
    return float(v) if isinstance(v, int | float) else None


def headline(phases: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The headline keys of bench/README.md's gpu section (None where a phase was skipped)."""
    ceil = _get(phases, "train-ceiling", "samples_per_s")
    comp = _get(phases, "train-ceiling-compiled", "samples_per_s")
    fed = _get(phases, "train-loader", "samples_per_s")
    fed_gpu = _get(phases, "train-loader-gpu-decode", "samples_per_s")
    ev = phases.get("eval", {})
    shared = ev.get("shared", {}).get("seconds")
    two = ev.get("two_pass", {}).get("seconds")
    best = max((x for x in (ceil, comp) if x), default=None)
    return {
        "gpu_name": torch.cuda.get_device_name(0)
        if device.type == "cuda"
        else "none (CPU dry run)",
        "train_samples_per_s_base": best,
        "train_loader_vs_ceiling": round(fed / ceil, 3) if fed and ceil else None,
        "train_loader_gpu_decode_vs_ceiling": round(fed_gpu / ceil, 3)
        if fed_gpu and ceil
        else None,
        "train_samples_per_s_base_finetune": _get(phases, "finetune-ceiling", "samples_per_s"),
        "gpu_jpeg_frames_per_s": _get(phases, "jpeg", "device_frames_per_s"),
        "eval_msrvtt_size_seconds": shared,
        "eval_time_ratio_two_pass_vs_shared": round(two / shared, 3) if shared and two else None,
    }


def markdown(phases: dict, figures: dict, s: Sizes, workers: int, device: torch.device) -> str:
    rows = ["| phase | figure | peak GiB | note |", "|---|---|---|---|"]
    for name, ph in phases.items():
        if "skipped" in ph:
            rows.append(f"| {name} | skipped | | {ph['skipped']} |")
        elif "samples_per_s" in ph:
            rows.append(f"| {name} | {ph['samples_per_s']:.1f} samples/s | "
                        f"{ph['peak_memory_gib']} | {ph['steps']} steps |")  # fmt: skip
        elif name == "jpeg":
            rows.append(f"| jpeg | {ph['device_frames_per_s']:.0f} frames/s on {ph['device']} vs "
                        f"{ph['cpu_frames_per_s_one_core']:.0f} CPU (one core) | | max diff "
                        f"{ph['max_abs_diff_vs_cpu']} |")  # fmt: skip
        elif name == "eval":
            for pairing in ("shared", "two_pass"):
                e = ph[pairing]
                rows.append(f"| eval {pairing} | {e['seconds']:.1f} s, {e['pairs']} pairs | "
                            f"{e['peak_memory_gib']} | {ph['num_texts']}x{ph['num_videos']}, "
                            f"{ph['num_frames']} frames, k={ph['k']} |")  # fmt: skip
    head = (f"GPU benchmark on {figures['gpu_name']} ({device}): preset {s.preset}, batch "
            f"{s.batch} x {s.frames} frames (fine-tune {s.ft_batch} x {s.ft_frames}), loader "
            f"workers {workers}.")  # fmt: skip
    keys = "\n".join(f"- `{k}`: {v}" for k, v in figures.items())
    ratio = figures["train_samples_per_s_base"]
    vs = f" ({ratio / VINDLU_V100_SAMPLES_PER_S:.1f}x VindLU's ~42/s per V100)" if ratio else ""
    return f"{head}\n\n" + "\n".join(rows) + f"\n\n{keys}\n\nBest training rate{vs}."


if __name__ == "__main__":
    sys.exit(cli(main))
