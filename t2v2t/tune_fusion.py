"""`make tune-fusion DATASET=<d>`: each post-hoc method's parameters chosen on training data.

Queries are held-out training captions (one per video of the first train shards, ``--queries``
videos), the gallery is those training videos, and the bank is the other training captions (the
held-out videos' captions removed, at most ``--bank-size``, a seeded sample). Each method's grid
(t2v2t/retrieval/tune.py) is scored by text->video Avg; the best is written to
``fusion_params.json`` beside the checkpoint, for ``ARGS='eval.fusion_params=...'``. The
reported split is never read (docs/evaluation.md, "Which fusion?").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

from t2v2t.data.eval_loader import eval_texts, open_eval_shards
from t2v2t.errors import ArgumentParser, UsageError, cli
from t2v2t.recipes import eval_shard_dir, text_len
from t2v2t.retrieval.bank import BANK_SEED, bank_dir, first_videos
from t2v2t.retrieval.evaluate import encode_texts, encode_videos, stage1_similarity
from t2v2t.retrieval.preprocess import clean_texts, default_preprocess
from t2v2t.retrieval.run import DATASETS, default_checkpoint, load_checkpoint, resolve_device
from t2v2t.retrieval.settings import EvalConfig
from t2v2t.retrieval.tune import tune


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
        epilog="example: t2v2t tune-fusion --dataset msrvtt  (make tune-fusion DATASET=msrvtt)",
    )
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--ckpt", default=None, help="default runs/finetune-<dataset>/best.pt")
    p.add_argument("--preset", default="base", choices=("base", "tiny"))
    p.add_argument("--shards", default="shards", help="shard root (default shards)")
    p.add_argument("--queries", type=int, default=1000, help="held-out training videos (1000)")
    p.add_argument("--bank-size", type=int, default=5000, help="bank captions at most (5000)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="default <checkpoint dir>/fusion_params.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ckpt = Path(args.ckpt) if args.ckpt else default_checkpoint(args.dataset)
    if not ckpt.exists():
        raise UsageError(f"checkpoint {ckpt} does not exist; pass --ckpt (CKPT=)")
    s = EvalConfig(
        dataset=args.dataset, shards=str(eval_shard_dir(args.dataset, args.shards)), bank="train"
    )
    train = bank_dir(s)
    shards = open_eval_shards(train)
    gallery = first_videos(shards, args.queries)
    loaded, tokenizer = load_checkpoint(ckpt, args.preset)
    device = resolve_device(args.device)
    model = loaded.model.to(device).eval()
    s = dataclasses.replace(s, preprocess=default_preprocess(loaded.source, loaded.extra))
    with torch.inference_mode():
        videos = encode_videos(
            model, gallery, num_frames=gallery.num_frames, batch_size=args.batch_size,
            device=device, preprocess=s.preprocess,
        )  # fmt: skip
        n = gallery.num_videos
        # One caption per held-out video is a query; every caption of those videos leaves the bank.
        first = {}
        for t, v in enumerate(videos.texts.text_video):
            first.setdefault(v, videos.texts.texts[t])
        everything = eval_texts(train)
        rest = [t for t, v in zip(everything.texts, everything.text_video, strict=True) if v >= n]
        if len(rest) > args.bank_size:
            pick = np.random.default_rng(BANK_SEED).choice(len(rest), args.bank_size, replace=False)
            rest = [rest[i] for i in np.sort(pick)]
        if not rest:
            raise UsageError(f"{train}: no training captions left for the bank; lower --queries")

        def feats(texts: list[str]) -> torch.Tensor:
            return encode_texts(
                model, tokenizer, clean_texts(texts, s.preprocess), max_text_len=text_len(args.dataset),
                batch_size=64, device=device, preprocess=s.preprocess,
            )[2]  # fmt: skip

        video_feat = videos.feat.to(device)
        sims = stage1_similarity(model, feats([first[v] for v in range(n)]), video_feat, s)
        bank = stage1_similarity(model, feats(rest), video_feat, s)
    result = tune(sims.cpu().double(), [[v] for v in range(n)], bank.cpu().double())
    result["tuned_on"] = {
        "dataset": args.dataset, "shards": str(train), "split": shards.manifest.get("split"),
        "queries": n, "bank_texts": len(rest), "checkpoint": str(ckpt), "objective": "t2v Avg",
    }  # fmt: skip
    out = Path(args.out) if args.out else ckpt.parent / "fusion_params.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for m, row in result["scores"].items():
        print(f"{m:<11} {result['params'][m]}  Avg {row['Avg']:.1f} (default {row['default_Avg']})")
    print(f"wrote {out}  (use: ARGS='eval.fusion_params={out}')")
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
