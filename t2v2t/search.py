"""`t2v2t search`: search a folder of videos (or a shard folder) with text queries: two-stage
retrieval with the chosen fusion over any checkpoint (project .pt, exported folder, VindLU .pth).
The videos are encoded once and cached (--cache, default $XDG_CACHE_HOME/t2v2t/index, else
~/.cache/t2v2t/index: nothing is written into the video folder); the cache is reused while the
videos and the checkpoint are unchanged. T2V2T's video->text direction runs over the queries
plus a query bank: the folder's captions (shard captions, <video>.txt or captions.csv) and the
lines of --bank FILE (docs/evaluation.md, "Python API")."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from t2v2t.errors import ArgumentParser, cli


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: t2v2t search --ckpt runs/finetune-msrvtt/best.pt "
        '--videos my_videos/ --query "a man is playing a guitar" --k 5',
    )
    p.add_argument("--ckpt", required=True, help="project .pt, exported folder or VindLU .pth")
    p.add_argument("--videos", required=True, help="folder of video files, or a shard folder")
    p.add_argument("--query", action="append", required=True, help="a text query (repeatable)")
    p.add_argument("--k", type=int, default=10, help="results per query (default 10)")
    p.add_argument("--fusion", default="t2v2t", choices=("t2v2t", "naive", "none"))
    p.add_argument("--bank", default=None, help="a text file of extra bank queries, one a line")
    p.add_argument(
        "--cache", default=None, help="index cache folder (default ~/.cache/t2v2t/index)"
    )
    p.add_argument("--preset", default=None, help="for project files that record none")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from t2v2t.api import Retriever
    from t2v2t.errors import UsageError

    videos, ckpt = Path(args.videos), Path(args.ckpt)
    if not videos.is_dir():
        raise UsageError(f"--videos {videos}: not a folder")
    if not ckpt.exists():
        raise UsageError(f"--ckpt {ckpt}: does not exist")
    if args.k < 1:
        raise UsageError(f"--k {args.k}: must be >= 1")
    bank = None
    if args.bank:
        extra = [ln.strip() for ln in Path(args.bank).read_text().splitlines() if ln.strip()]
    retriever = Retriever.from_checkpoint(ckpt, device=args.device, preset=args.preset)
    index = retriever.index(videos, args.cache)  # None: the user's cache folder
    if args.bank:
        bank = index.captions + extra
    state = "reused" if index.reused else "built"
    print(f"[search] index {state}: {len(index.keys)} videos, {len(index.captions)} captions "
          f"({index.path})")  # fmt: skip
    results = retriever.search(args.query, index, k=args.k, fusion=args.fusion, bank=bank)
    for query, ranked in zip(args.query, results, strict=True):
        print(f"query: {query}  (fusion {args.fusion})")
        for rank, (key, score) in enumerate(ranked, 1):
            print(f"{rank:3d}. {key}  {score:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
