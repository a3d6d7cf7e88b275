"""A Python retrieval API over any checkpoint the project loads (docs/evaluation.md, "Python API").

>>> r = Retriever.from_checkpoint("vindlu_msrvtt.pth")          # or a project .pt / export folder
>>> r.similarity(["a dog runs"], frames)                         # stage-1 scores [texts, videos]
>>> idx = r.index("my_videos/")              # encoded once, cached in ~/.cache/t2v2t/index
>>> r.search(["a dog runs"], idx, k=5)                           # [[(key, score), ...]]

Texts are cleaned and tokenised as the checkpoint's evaluation does; frames are uint8
``[num_videos, T, H, W, 3]`` tensors (resized to the model's image size with the evaluation's
rule unless already that size) or video paths, decoded and sampled as the evaluation shards are.

T2V2T needs the video->text direction: every video's softmax over a set of texts. A search
therefore scores the queries together with a query bank: the index's own captions (a shard
folder's, or ``captions.csv``/sidecar ``.txt`` files beside the videos) and any list passed as
``bank=``. With no bank, the video->text softmax runs over the queries alone.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from preprocessing.decode import decode_frames
from t2v2t.data.augment import normalize, squash_bicubic
from t2v2t.data.cache import user_cache_dir
from t2v2t.data.captions import tokenize
from t2v2t.data.frames import frame_indices
from t2v2t.models.loading import load_any_checkpoint, tokenizer_for
from t2v2t.recipes import SENTENCE_LEN
from t2v2t.retrieval.evaluate import TEXT_BATCH, encode_videos
from t2v2t.retrieval.fusion import FUSIONS, candidate_masks, fuse_all
from t2v2t.retrieval.preprocess import (
    autocast_for,
    clean_texts,
    default_preprocess,
    raw_similarity,
)
from t2v2t.retrieval.rerank import ModelPairScorer, rerank_shared

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
INDEX_FORMAT = "t2v2t-index/1"


@dataclass
class VideoIndex:
    """Encoded videos: ``keys`` [Nv], ``video_feat`` [Nv, T, E] (stage 1), ``video_embeds``
    [Nv, T*(N+1), D] (stage 2), and the captions found with them (the default query bank)."""

    keys: list[str]
    video_feat: torch.Tensor
    video_embeds: torch.Tensor
    captions: list[str] = field(default_factory=list)
    path: Path | None = None  # the cache file
    reused: bool = False  # True when read from the cache instead of encoded


def _center_square(frames: torch.Tensor) -> torch.Tensor:
    h, w = frames.shape[1:3]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return frames[:, top : top + side, left : left + side]


def resize_frames(frames: torch.Tensor, size: int, preprocess: str) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` -> ``[T, size, size, 3]`` by the evaluation's rule: VindLU's
    bicubic squash, or the project's centred square resized bilinearly (no copy when the frames
    already have the size)."""
    if tuple(frames.shape[1:3]) == (size, size):
        return frames
    if preprocess == "vindlu":
        return squash_bicubic(frames, size)
    sq = _center_square(frames).permute(0, 3, 1, 2).float()
    out = F.interpolate(sq, size=(size, size), mode="bilinear", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _video_fingerprint(path: Path) -> list[Any]:
    st = path.stat()
    return [path.name, st.st_size, st.st_mtime_ns]


class Retriever:
    """Stage-1 similarities, VTM logits and cached search for one checkpoint."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        device: str | torch.device = "cpu",
        preprocess: str = "project",
        source: str = "project",
        checkpoint: Path | None = None,
        max_text_len: int = SENTENCE_LEN,
    ) -> None:
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.preprocess = preprocess
        self.source = source
        self.checkpoint = checkpoint
        self.max_text_len = int(max_text_len)
        self.num_frames = int(model.config.num_frames)
        self.image_size = int(model.config.image_size)
        self.batch_size = 8

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", **kwargs: Any) -> Retriever:
        """A project ``.pt``, an exported folder or a VindLU ``.pth`` (recognised by content).
        ``preset=`` (for project files that record none), ``preprocess=`` (default: the
        checkpoint's evaluation) and ``say=`` (report lines; default silent) are optional."""
        say = kwargs.pop("say", lambda _m: None)
        loaded = load_any_checkpoint(path, kwargs.pop("preset", None), say=say)
        preprocess = kwargs.pop("preprocess", None) or default_preprocess(
            loaded.source, loaded.extra
        )
        if kwargs:
            raise TypeError(f"unknown options {sorted(kwargs)}")
        return cls(
            loaded.model,
            tokenizer_for(loaded),
            device=device,
            preprocess=preprocess,
            source=loaded.source,
            checkpoint=Path(path),
            max_text_len=loaded.config.max_text_len,
        )

    # ---- encoders --------------------------------------------------------------------------
    def _amp(self):
        return autocast_for(self.device, self.preprocess)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(text_embeds [Nt, L, D], attention_mask [Nt, L], text_feat [Nt, E]) on the device."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a list of strings")
        cleaned = clean_texts(list(texts), self.preprocess)
        embeds, masks, feats = [], [], []
        for start in range(0, len(cleaned), TEXT_BATCH):
            chunk = cleaned[start : start + TEXT_BATCH]
            ids, mask = tokenize(self.tokenizer, chunk, self.max_text_len)
            ids, mask = ids.to(self.device), mask.to(self.device)
            with self._amp():
                e, f = self.model.encode_text(ids, mask)
            embeds.append(e)
            masks.append(mask)
            feats.append(f.float())
        return torch.cat(embeds), torch.cat(masks), torch.cat(feats)

    def load_frames(self, frames: torch.Tensor | Sequence[str | Path]) -> torch.Tensor:
        """uint8 ``[Nv, T, size, size, 3]`` from a uint8 tensor or a list of video paths."""
        if isinstance(frames, torch.Tensor):
            if frames.dtype != torch.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
                raise ValueError(
                    f"frames must be uint8 [num_videos, T, H, W, 3], got {frames.dtype} "
                    f"{tuple(frames.shape)}"
                )
            return torch.stack([resize_frames(v, self.image_size, self.preprocess) for v in frames])
        if isinstance(frames, (str, Path)):
            raise TypeError("frames: pass a list of video paths, not one path")
        return torch.stack([self._decode(Path(p)) for p in frames])

    def _decode(self, path: Path) -> torch.Tensor:
        """Frames of one video as evaluation shards store them: the middle frame of each of
        ``num_frames`` segments (VindLU's rule for a VindLU checkpoint), short side 224."""
        mode = "vindlu_middle" if self.preprocess == "vindlu" else "middle"

        def pick(vlen: int) -> list[int]:
            return [s[0] for s in frame_indices(self.num_frames, vlen, mode)]

        dec = decode_frames(path, pick, short_side=max(224, self.image_size))
        video = torch.from_numpy(np.stack(dec.frames))
        return resize_frames(video, self.image_size, self.preprocess)

    @torch.inference_mode()
    def encode_videos(
        self, frames: torch.Tensor | Sequence[str | Path]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(video_embeds [Nv, T*(N+1), D], video_feat [Nv, T, E]) on the CPU, float32."""
        if not isinstance(frames, torch.Tensor):
            frames = list(frames)
        embeds, feats = [], []
        cfg = self.model.config
        for start in range(0, len(frames), self.batch_size):
            chunk = self.load_frames(frames[start : start + self.batch_size])
            x = normalize(chunk.permute(0, 1, 4, 2, 3).to(self.device), cfg.mean, cfg.std)
            with self._amp():
                e, f = self.model.encode_video(x)
            embeds.append(e.float().cpu())
            feats.append(f.float().cpu())
        return torch.cat(embeds), torch.cat(feats)

    # ---- scores ----------------------------------------------------------------------------
    def _stage1(self, text_feat: torch.Tensor, video_feat: torch.Tensor) -> torch.Tensor:
        video_feat = video_feat.to(self.device)
        with torch.inference_mode():
            if self.preprocess == "vindlu":
                return raw_similarity(text_feat, video_feat).cpu()
            return self.model.similarity(text_feat, video_feat).float().cpu()

    def similarity(
        self, texts: Sequence[str], frames: torch.Tensor | Sequence[str | Path]
    ) -> torch.Tensor:
        """[num_texts, num_videos]: the stage-1 scores evaluation ranks by (VindLU checkpoints:
        the mean over frames of per-frame cosines; project: the same divided by the
        temperature)."""
        _, _, text_feat = self.encode_texts(texts)
        _, video_feat = self.encode_videos(frames)
        return self._stage1(text_feat, video_feat)

    def _scorer(self, text_embeds, text_mask, video_embeds) -> ModelPairScorer:
        return ModelPairScorer(
            self.model,
            text_embeds,
            text_mask,
            video_embeds,
            device=self.device,
            preprocess=self.preprocess,
        )

    def match_logits(
        self, texts: Sequence[str], frames: torch.Tensor | Sequence[str | Path]
    ) -> torch.Tensor:
        """[num_texts, num_videos]: the VTM class-1 logit of every (text, video) pair."""
        text_embeds, text_mask, _ = self.encode_texts(texts)
        video_embeds, _ = self.encode_videos(frames)
        nt, nv = len(text_embeds), len(video_embeds)
        every = torch.ones((nt, nv), dtype=torch.bool)
        scorer = self._scorer(text_embeds, text_mask, video_embeds)
        return rerank_shared(scorer, every, every).m_t2v.cpu()

    # ---- index and search ------------------------------------------------------------------
    def _checkpoint_id(self) -> list[Any]:
        p = self.checkpoint
        if p is None or not p.exists():
            return [str(p)]
        if p.is_dir():
            return [str(p.resolve())] + _video_fingerprint(p / "model.safetensors")
        return [str(p.resolve())] + _video_fingerprint(p)

    def index(
        self, videos_or_shard_dir: str | Path, cache_dir: str | Path | None = None
    ) -> VideoIndex:
        """Encode every video of a folder of video files (or a shard folder, recognised by its
        ``manifest.json``) once; cached under ``cache_dir`` and reused while the videos (name,
        size, modification time), the checkpoint and the preprocessing are unchanged.

        ``cache_dir`` None: the user's cache (``$XDG_CACHE_HOME/t2v2t/index``, else
        ``~/.cache/t2v2t/index``), never the video folder, which may be a read-only mount. The
        file name is a digest of the folder's path and contents, so many folders share it."""
        src = Path(videos_or_shard_dir)
        if not src.is_dir():
            raise FileNotFoundError(f"{src}: not a folder of videos or shards")
        shard = (src / "manifest.json").is_file()
        if shard:
            names = sorted(p for p in src.iterdir() if p.is_file())
            files = [_video_fingerprint(p) for p in names]
        else:
            videos = sorted(p for p in src.iterdir() if p.suffix.lower() in VIDEO_EXTS)
            if not videos:
                raise FileNotFoundError(f"{src}: no video files ({', '.join(VIDEO_EXTS)})")
            files = [_video_fingerprint(p) for p in videos]
            files += [_video_fingerprint(p) for p in sorted(src.glob("*.txt"))]
            if (src / "captions.csv").is_file():
                files.append(_video_fingerprint(src / "captions.csv"))
        ident = {
            "format": INDEX_FORMAT,
            "source": str(src.resolve()),
            "files": files,
            "checkpoint": self._checkpoint_id(),
            "preprocess": self.preprocess,
            "num_frames": self.num_frames,
            "image_size": self.image_size,
        }
        digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]
        cache = Path(cache_dir) if cache_dir is not None else user_cache_dir("index")
        cache.mkdir(parents=True, exist_ok=True)
        tensors_path, meta_path = cache / f"{digest}.safetensors", cache / f"{digest}.json"
        if tensors_path.is_file() and meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            t = load_file(str(tensors_path))
            return VideoIndex(
                meta["keys"], t["video_feat"], t["video_embeds"], meta["captions"],
                tensors_path, reused=True,
            )  # fmt: skip
        if shard:
            keys, captions, video_embeds, video_feat = self._encode_shards(src)
        else:
            keys = [p.stem for p in videos]
            captions = _folder_captions(src, keys)
            video_embeds, video_feat = self.encode_videos(videos)
        tmp = tensors_path.with_name(f".{digest}.{os.getpid()}.tmp")
        save_file({"video_feat": video_feat.contiguous(), "video_embeds": video_embeds.contiguous()},
                  str(tmp))  # fmt: skip
        tmp.replace(tensors_path)
        meta_path.write_text(json.dumps({**ident, "keys": keys, "captions": captions}) + "\n")
        return VideoIndex(keys, video_feat, video_embeds, captions, tensors_path, reused=False)

    @torch.inference_mode()
    def _encode_shards(self, src: Path) -> tuple[list[str], list[str], torch.Tensor, torch.Tensor]:
        # One pass over the shards: the frames and, with them, the captions.
        videos = encode_videos(
            self.model, src, num_frames=self.num_frames, batch_size=self.batch_size,
            device=self.device, preprocess=self.preprocess,
        )  # fmt: skip
        order = videos.rows.clamp_min(0)
        keys, captions = videos.texts.video_keys, videos.texts.texts
        return list(keys), list(captions), videos.embeds[order].float(), videos.feat

    def search(
        self,
        queries: Sequence[str],
        index: VideoIndex,
        k: int = 10,
        fusion: str = "t2v2t",
        *,
        bank: Sequence[str] | None = None,
        candidates: int = 128,
    ) -> list[list[tuple[str, float]]]:
        """The ``k`` best videos of ``index`` for each query: ``[(key, score), ...]``, best
        first. Stage 1 picks each query's (and each video's) ``candidates``; stage 2 scores
        the pairs with VTM; ``fusion`` is ``none``, ``naive`` or ``t2v2t``. The video->text
        direction runs over the queries plus the bank (``bank`` None: the index's captions)."""
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if isinstance(queries, str):
            queries = [queries]
        bank = list(index.captions if bank is None else bank)
        texts = list(queries) + bank
        text_embeds, text_mask, text_feat = self.encode_texts(texts)
        sims = self._stage1(text_feat, index.video_feat)
        nv = len(index.keys)
        cand_t2v, cand_v2t = candidate_masks(sims, min(candidates, nv))
        cand_t2v, cand_v2t = cand_t2v.cpu(), cand_v2t.cpu()
        scorer = self._scorer(text_embeds, text_mask, index.video_embeds)
        stage2 = rerank_shared(scorer, cand_t2v, cand_v2t)
        fused = fuse_all(stage2.m_t2v.cpu(), cand_t2v, cand_v2t, stage2.m_v2t.cpu())
        scores = fused[fusion].t2v[: len(queries)]
        top = scores.topk(min(k, nv), dim=1)
        return [
            [(index.keys[int(v)], float(s)) for s, v in zip(row_s, row_v, strict=True)]
            for row_s, row_v in zip(top.values, top.indices, strict=True)
        ]


def _folder_captions(folder: Path, keys: list[str]) -> list[str]:
    """Captions beside the videos: ``<key>.txt`` (one per line) or ``captions.csv`` with
    ``key,caption`` rows (the folder recipe's file). Empty when there are none."""
    out: list[str] = []
    for key in keys:
        txt = folder / f"{key}.txt"
        if txt.is_file():
            out += [line.strip() for line in txt.read_text().splitlines() if line.strip()]
    csv_path = folder / "captions.csv"
    if csv_path.is_file():
        with csv_path.open(newline="") as f:
            for row in csv.reader(f):
                if len(row) >= 2 and row[0] != "key" and row[1].strip():
                    out.append(row[1].strip())
    return out


__all__ = ["Retriever", "VideoIndex", "resize_frames"]
