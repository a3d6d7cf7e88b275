"""Attribute probe of a video encoder on a synthetic corpus (see ``t2v2t/tools/probe.py``).

    python scripts/probe_attribute.py --ckpt runs/demo/finetune-msrvtt/best.pt \\
        --shards runs/demo/shards/msrvtt --attributes runs/demo/data/msrvtt/synthetic_attributes.json \\
        --attribute direction [--train-encoder --steps 300]

Reads ``<shards>/train_<N>f`` and ``<shards>/test_<N>f``, prints a table of held-out accuracy
against chance and writes it as JSON (``--out``). Without ``--ckpt`` the preset's fresh model.
``--device auto`` trains on the GPU when there is one (bf16 autocast), else the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from t2v2t.errors import ArgumentParser, cli
from t2v2t.models import build_model
from t2v2t.retrieval.run import UsageError, load_model, resolve_device
from t2v2t.tools.probe import ATTRIBUTES, ProbeSettings, load_clips, run_probe


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(
        epilog="example: python scripts/probe_attribute.py --shards runs/demo/shards/msrvtt --attribute direction",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument(
        "--shards", required=True, help="dataset shard folder holding train_* and test_*"
    )
    p.add_argument("--attributes", required=True, help="synthetic_attributes.json of the corpus")
    p.add_argument("--attribute", required=True, choices=ATTRIBUTES)
    p.add_argument("--ckpt", default=None, help="checkpoint; default: the preset's fresh model")
    p.add_argument("--preset", default="tiny", choices=("base", "tiny"))
    p.add_argument("--frames", type=int, default=4, help="frames per clip (of those stored)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--train-encoder", action="store_true", help="fine-tune the encoder too")
    p.add_argument("--temporal-lr-scale", type=float, default=1.0)
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = default")
    p.add_argument("--out", default=None, help="JSON file for the results")
    return p.parse_args(argv)


def shard_dir(root: Path, split: str) -> Path:
    found = sorted(root.glob(f"{split}_*f"))
    if not found:
        raise SystemExit(
            f"error: no {split}_<N>f shard folder in {root}; build it with make shards"
        )
    return found[0]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.ckpt:
            model, _, _ = load_model(Path(args.ckpt), args.preset)
        else:
            model = build_model(args.preset, init=os.environ.get("INIT") or None)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size = model.config.image_size
    root = Path(args.shards)
    try:
        train = load_clips(shard_dir(root, "train"), args.attributes, args.attribute,
                           num_frames=args.frames, image_size=size)  # fmt: skip
        test = load_clips(shard_dir(root, "test"), args.attributes, args.attribute,
                          num_frames=args.frames, image_size=size, classes=train.classes)  # fmt: skip
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"[probe] {args.attribute}: {len(train.labels)} train / {len(test.labels)} test clips, "
        f"{len(train.classes)} classes {train.classes}, {args.frames} frames, "
        f"{'encoder trained' if args.train_encoder else 'encoder frozen'}"
    )
    settings = ProbeSettings(
        steps=args.steps, batch_size=args.batch_size, train_encoder=args.train_encoder,
        temporal_lr_scale=args.temporal_lr_scale, weight_decay=args.weight_decay,
        eval_every=args.eval_every, seed=args.seed,
    )  # fmt: skip
    rows = run_probe(model, train, test, settings, device=resolve_device(args.device))
    chance = max(torch.bincount(test.labels).tolist()) / len(test.labels)
    print("\n| step | loss | train acc | test acc | chance (majority) |\n|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['step']} | {r['loss']:.3f} | {r['train_acc']:.3f} | {r['test_acc']:.3f} | {chance:.3f} |"
        )
    if args.out:
        result = {"attribute": args.attribute, "classes": train.classes, "chance": chance,
                  "ckpt": args.ckpt, "frames": args.frames, "train_encoder": args.train_encoder,
                  "settings": asdict(settings), "device": str(resolve_device(args.device)),
                  "rows": rows}  # fmt: skip
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
