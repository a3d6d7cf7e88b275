"""Build a model preset offline on CPU, print its parameters per part and one forward's losses.

INIT=random python scripts/model_summary.py --preset base
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from t2v2t.errors import ArgumentParser, cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


import torch  # noqa: E402

from t2v2t.models import WeightsUnavailableError, build_model, build_tokenizer  # noqa: E402
from t2v2t.training.objective import Objective  # noqa: E402

CAPTIONS = [
    "a small red circle moves slowly to the left on a blue background",
    "a large green square moves quickly up",
]


def main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(
        epilog="example: python scripts/model_summary.py --preset tiny",
        description=__doc__.splitlines()[0],
    )
    ap.add_argument("--preset", default="base", choices=["base", "tiny"])
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--init", default=None, help="random|pretrained (default: $INIT)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    torch.manual_seed(0)
    t0 = time.perf_counter()
    try:
        model = build_model(args.preset, init=args.init or os.environ.get("INIT") or None)
    except WeightsUnavailableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tok = build_tokenizer(args.preset)
    built = time.perf_counter() - t0
    cfg = model.config
    print(
        f"preset {cfg.preset}: vision {cfg.vision_model} @ {cfg.image_size}px, "
        f"text {cfg.text_model} (fusion from layer {cfg.fusion_layer}), built in {built:.1f}s"
    )
    for part, n in model.param_counts().items():
        print(f"  {part:<9} {n:>13,d} parameters")

    b, t, s = args.batch, args.frames, cfg.image_size
    frames = torch.randn(b, t, 3, s, s)
    texts = [CAPTIONS[i % len(CAPTIONS)] for i in range(b)]
    enc = tok(
        texts,
        padding="max_length",
        truncation=True,
        max_length=cfg.max_text_len,
        return_tensors="pt",
    )
    video_ids = torch.arange(b)
    model.train()
    t0 = time.perf_counter()
    out = Objective(model)(frames, enc["input_ids"], enc["attention_mask"], video_ids)
    fwd = time.perf_counter() - t0
    losses = ", ".join(f"{k} {out[k].item():.4f}" for k in ("loss", "vtc", "vtm", "mlm"))
    print(f"forward on {b} videos x {t} frames ({fwd:.1f}s): {losses}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli(main))
