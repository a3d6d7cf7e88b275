"""`t2v2t inspect-stream`: print a shard folder's training stream, one sample per line, in the order the trainer gets it.

Each line: ``key`` then the chosen frame indices (original video frame numbers), e.g.
``vid_0003 2 11 19 27``. Runs the real loader (same plan, same workers, same decode), so it is
the tool to debug data order and to check determinism across workers, epochs and ranks::

    t2v2t inspect-stream --shards shards/webvid/train_4f --epoch 1 --workers 2 \\
        --world-size 2 --rank 1 --limit 20
"""

from __future__ import annotations

import argparse
import sys

from t2v2t.data.loader import TrainSource, make_train_loader
from t2v2t.data.shards import ShardError, read_manifest
from t2v2t.errors import ArgumentParser, cli


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        epilog="example: t2v2t inspect-stream --shards shards/webvid/train_4f --world-size 2 --limit 8",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument(
        "--shards", required=True, help="a shard folder or URL (holds manifest.json)"
    )
    parser.add_argument("--epoch", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="loader worker processes")
    parser.add_argument("--world-size", type=int, default=1)
    parser.add_argument("--rank", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0, help="stop after K samples (0: all)")
    parser.add_argument("--frames", type=int, default=0, help="frames per video (0: as stored)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--skip-samples", type=int, default=0, help="resume point (this rank)")
    parser.add_argument("--shuffle-buffer", type=int, default=1000)
    parser.add_argument("--captions", action="store_true", help="print each sample's caption")
    parser.add_argument(
        "--captions-per-epoch",
        choices=("all", "one"),
        default="one",
        help="all: every (video, caption) once (the recipes' data.captions_per_epoch)",
    )
    args = parser.parse_args(argv)
    try:
        frames = args.frames or int(read_manifest(args.shards)["num_frames"])
        loader = make_train_loader(
            [TrainSource(args.shards, args.batch_size, frames)],
            None,  # no tokenizer: only keys and frame indices are printed
            seed=args.seed,
            epoch=args.epoch,
            rank=args.rank,
            world_size=args.world_size,
            num_workers=args.workers,
            image_size=args.image_size,
            skip_samples=args.skip_samples,
            shuffle_buffer=args.shuffle_buffer,
            captions_per_epoch=args.captions_per_epoch,
        )
    except (ShardError, ValueError) as err:
        print(f"inspect_stream: {err}", file=sys.stderr)
        return 2
    shown = 0
    for batch in loader:
        rows = zip(batch["keys"], batch["frame_indices"].tolist(), batch["texts"], strict=True)
        for key, idx, text in rows:
            line = " ".join([key, *map(str, idx)])
            print(f"{line}\t{text}" if args.captions else line)
            shown += 1
            if args.limit and shown >= args.limit:
                return 0
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
