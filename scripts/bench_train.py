"""Training throughput: samples/s of full optimiser steps (forward, VTC+VTM+MLM, backward, AdamW).

- ``train_samples_per_s_tiny_cpu``: the tiny preset on CPU (batch 8, 4 frames, its image size).
- ``train_samples_per_s_base_gpu``: on a CUDA machine, the base preset at the paper's pre-training
  shape (4 frames, 224 px, batch 64 per GPU, bf16 autocast), random init (throughput does not
  depend on the weights). The bar: VindLU reports 15 V100-days for 10 epochs over 5.5M pairs,
  i.e. 5.5e6 * 10 / (15 * 86400) ~ 42 samples/s per V100.

Batches are synthetic (random uint8 frames and token ids) so the figure is the model step alone;
the loader has its own benchmark. ``--quick`` runs two tiny steps into a temporary folder (a smoke
test of this script, not a measurement); run the real one on a quiet machine.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from t2v2t.errors import ArgumentParser, cli
from t2v2t.models.start import build_for_training
from t2v2t.tools.benchlog import BENCH_DIR, record
from t2v2t.training.config import load_config
from t2v2t.training.loop import autocast_dtype, forward_loss, model_spec, seed_everything
from t2v2t.training.objective import Objective
from t2v2t.training.optim import build_optimizer

VINDLU_V100_SAMPLES_PER_S = 5.5e6 * 10 / (15 * 86400)


def synthetic_batch(model: torch.nn.Module, batch: int, frames: int, text_len: int) -> dict:
    g = torch.Generator().manual_seed(0)
    size = model.config.image_size
    ids = torch.randint(1000, model.config.vocab_size, (batch, text_len), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    return {
        "frames": torch.randint(
            0, 256, (batch, frames, 3, size, size), dtype=torch.uint8, generator=g
        ),
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "video_ids": torch.arange(batch),
        "source": "synthetic",
    }


def measure(
    preset: str,
    device: torch.device,
    *,
    batch: int,
    frames: int,
    warmup: int,
    steps: int,
    overrides: list[str] | None = None,
) -> dict:
    """Median-free simple rate: total samples / total seconds over ``steps`` timed steps."""
    cfg = load_config("pretrain", preset, ["model.init=random", *(overrides or [])])
    seed_everything(0)
    model = build_for_training(model_spec(cfg)).to(device).train()
    o = cfg.optim
    opt = build_optimizer(model, o.lr, o.weight_decay, (o.betas[0], o.betas[1]), o.eps)
    amp = autocast_dtype(cfg, device)
    data = synthetic_batch(model, batch, frames, 32)
    objective = Objective.from_config(model, cfg.loss)

    def one_step() -> float:
        out = forward_loss(objective, data, device, amp)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        return float(out["loss"].detach())

    for _ in range(warmup):
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {
        "samples_per_s": batch * steps / seconds,
        "batch": batch,
        "frames": frames,
        "image_size": model.config.image_size,
        "steps": steps,
        "seconds": round(seconds, 3),
        "precision": str(amp or torch.float32).replace("torch.", ""),
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        epilog="example: python scripts/bench_train.py --quick --no-gpu", description=__doc__
    )
    parser.add_argument("--quick", action="store_true", help="2 tiny steps, results to a temp dir")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no-gpu", action="store_true", help="skip the base-preset GPU figure")
    args = parser.parse_args(argv)
    bench_dir = Path(tempfile.mkdtemp(prefix="bench_train_")) if args.quick else BENCH_DIR
    steps, warmup = (2, 1) if args.quick else (args.steps, 3)

    figures, details = {}, {}
    cpu = measure(
        "tiny",
        torch.device("cpu"),
        batch=2 if args.quick else 8,
        frames=4,
        warmup=warmup,
        steps=steps,
    )
    figures["train_samples_per_s_tiny_cpu"] = round(cpu["samples_per_s"], 3)
    details["tiny_cpu"] = cpu
    summary = [
        f"Tiny preset on CPU: {cpu['samples_per_s']:.2f} samples/s "
        f"(batch {cpu['batch']}, {cpu['frames']} frames, {cpu['image_size']} px, fp32)."
    ]
    if torch.cuda.is_available() and not args.no_gpu:
        gpu = measure(
            "base",
            torch.device("cuda"),
            batch=2 if args.quick else 64,
            frames=4,
            warmup=warmup,
            steps=steps,
        )
        gpu["card"] = torch.cuda.get_device_name(0)
        gpu["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        gpu["vs_vindlu_v100"] = round(gpu["samples_per_s"] / VINDLU_V100_SAMPLES_PER_S, 2)
        figures["train_samples_per_s_base_gpu"] = round(gpu["samples_per_s"], 2)
        figures["train_base_gpu_card"] = gpu["card"]
        details["base_gpu"] = gpu
        summary.append(
            f"Base preset on {gpu['card']}: {gpu['samples_per_s']:.1f} samples/s (batch 64, 4 "
            f"frames, 224 px, bf16), {gpu['vs_vindlu_v100']}x VindLU's ~42 samples/s per V100."
        )
    details["summary"] = " ".join(summary) + " Synthetic batches; full VTC+VTM+MLM steps."
    record("train", figures, details, bench_dir=bench_dir)
    print("\n".join(f"{k}: {v}" for k, v in figures.items()))
    if args.quick:
        print(f"(quick run: written to {bench_dir}, not bench/)")
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
