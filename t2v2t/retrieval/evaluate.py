"""Retrieval evaluation: features -> stage 1 (VTC top-k) -> stage 2 (VTM, shared pairs) -> fusions.

:func:`evaluate_retrieval` returns the result JSON (every fusion, both directions) as an
:class:`EvalResult` — a plain ``dict`` (JSON-serialisable as it is) whose ``scores`` attribute holds
the matrices; :func:`write_eval_outputs` writes ``<dataset>_<split>.json`` and
``<dataset>_<split>_scores.npz``. Under ``torch.distributed`` every rank encodes its share of the
videos (the eval loader splits them) and scores the candidate pairs of those videos; features and
pair logits are gathered, so every rank returns the same result as one process would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from t2v2t.data.shards import read_manifest
from t2v2t.progress import progress
from t2v2t.recipes import text_len
from t2v2t.retrieval.fusion import FUSIONS, candidate_masks, fuse_all
from t2v2t.retrieval.metrics import retrieval_metrics
from t2v2t.retrieval.preprocess import (
    amp_dtype,
    autocast_for,
    check_preprocess,
    clean_texts,
    raw_similarity,
)
from t2v2t.retrieval.rerank import (
    PAIR_BATCH,
    ModelPairScorer,
    RerankResult,
    rerank_shared,
    rerank_two_pass,
)
from t2v2t.retrieval.stats import retrieval_statistics

PAIRINGS = ("shared", "two_pass")


class EvalResult(dict):
    """The result JSON (a dict); ``.scores`` carries the arrays written to the ``.npz``."""

    scores: dict[str, np.ndarray]


def default_text_len(dataset: str) -> int:
    return text_len(dataset)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_gather(obj: Any) -> list[Any]:
    rank, world = _world()
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _amp(device: torch.device, preprocess: str = "project"):
    # bf16 autocast on GPUs (as in training), fp16 for VindLU's evaluation; CPUs run float32.
    return autocast_for(device, preprocess)


def encode_videos(
    model: torch.nn.Module,
    shard_dir: str | Path,
    num_videos: int,
    *,
    num_frames: int,
    batch_size: int,
    device: torch.device,
    preprocess: str = "project",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """This rank's videos -> (video_embeds [n, T*(N+1), Dv] local rows, video_rows [Nv] global ->
    local row or -1, video_feat [Nv, T, E] of every video, gathered from all ranks)."""
    from t2v2t.data.augment import normalize
    from t2v2t.data.eval_loader import make_eval_loader

    rank, world = _world()
    cfg = model.config
    loader = make_eval_loader(
        shard_dir,
        batch_size=batch_size,
        num_frames=num_frames,
        image_size=cfg.image_size,
        rank=rank,
        world_size=world,
        preprocess=preprocess,
    )
    embeds, feats, index = [], [], []
    # Stored in the autocast dtype on GPUs: half the memory for the stage-2 pairs.
    store = amp_dtype(preprocess) if device.type == "cuda" else torch.float32
    for batch in progress(loader, desc="eval: encode videos", unit="batch"):
        frames = normalize(batch["frames"].to(device, non_blocking=True), cfg.mean, cfg.std)
        with _amp(device, preprocess):
            video_embeds, video_feat = model.encode_video(frames)
        embeds.append(video_embeds.to(store).cpu())
        feats.append(video_feat.float().cpu())
        index.append(batch["index"].cpu().long())
    local_index = torch.cat(index) if index else torch.zeros(0, dtype=torch.long)
    local_feat = torch.cat(feats) if feats else torch.zeros(0)
    video_rows = torch.full((num_videos,), -1, dtype=torch.long)
    video_rows[local_index] = torch.arange(len(local_index))
    video_feat = None
    seen = torch.zeros(num_videos, dtype=torch.long)
    for idx, feat in _all_gather((local_index, local_feat)):
        if len(idx) == 0:
            continue
        if video_feat is None:
            video_feat = torch.zeros((num_videos, *feat.shape[1:]), dtype=torch.float32)
        video_feat[idx] = feat
        seen[idx] += 1
    if video_feat is None or not bool((seen == 1).all()):
        bad = torch.nonzero(seen != 1).flatten()[:5].tolist()
        raise RuntimeError(
            f"{shard_dir}: the eval loader must yield every video exactly once across ranks; "
            f"videos {bad} were seen {[int(seen[i]) for i in bad]} times"
        )
    local_embeds = torch.cat(embeds) if embeds else torch.zeros(0)
    return local_embeds, video_rows, video_feat


def encode_texts(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_text_len: int,
    batch_size: int,
    device: torch.device,
    preprocess: str = "project",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every text on every rank -> (text_embeds [Nt, L, D], attention_mask [Nt, L], text_feat)."""
    embeds, masks, feats = [], [], []
    starts = range(0, len(texts), batch_size)
    for start in progress(starts, desc="eval: encode texts", unit="batch"):
        tok = tokenizer(
            list(texts[start : start + batch_size]),
            padding="max_length",  # one L for all texts: pairs are stacked across batches
            truncation=True,
            max_length=max_text_len,
            return_tensors="pt",
        )
        ids = tok["input_ids"].to(device)
        mask = tok["attention_mask"].to(device)
        with _amp(device, preprocess):
            text_embeds, text_feat = model.encode_text(ids, mask)
        embeds.append(text_embeds)
        masks.append(mask)
        feats.append(text_feat.float())
    return torch.cat(embeds), torch.cat(masks), torch.cat(feats)


def _maybe_to_device(t: torch.Tensor, device: torch.device, share: float = 0.4) -> torch.Tensor:
    # Video embeddings stay on the host when they would crowd the GPU (32-frame ActivityNet
    # with the base model is ~10 MB a video); the scorer then moves each chunk's videos once.
    if device.type != "cuda":
        return t
    free, _ = torch.cuda.mem_get_info(device)
    return t.to(device) if t.numel() * t.element_size() < share * free else t


def evaluate_retrieval(
    model: torch.nn.Module,
    tokenizer: Any,
    shard_dir: str | Path,
    *,
    dataset: str,
    split: str,
    k: int = 128,
    num_frames: int | None = None,
    batch_size: int = 32,
    max_text_len: int | None = None,
    tau: float = 1.0,
    lam: float = 1.0,
    rerank: bool = True,
    device: str | torch.device = "cpu",
    checkpoint: str | None = None,
    pairing: str = "shared",
    pair_batch: int = PAIR_BATCH,
    share_video_kv: bool | None = None,
    preprocess: str = "project",
    log: Callable[[str], None] | None = None,
) -> EvalResult:
    """Two-stage retrieval on one eval shard folder; all three fusions; writes nothing.

    ``num_frames`` None = the shards' frame count; ``max_text_len`` None = 32 (sentences) or 64
    (paragraphs: didemo, anet). ``rerank=False`` fuses the stage-1 similarities (candidates still
    their top-k). ``pairing``: ``shared`` (each pair once) or ``two_pass`` (VindLU's baseline).
    ``share_video_kv`` None = True for shared pairs, False for VindLU's two passes (which repeat
    each video's embeddings per pair, as VindLU does). ``preprocess``: ``project`` or ``vindlu``
    (VindLU's frames, caption cleaning, raw stage-1 cosines and fp16; see
    :mod:`t2v2t.retrieval.preprocess`).
    """
    from t2v2t.data.eval_loader import eval_texts

    if pairing not in PAIRINGS:
        raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
    check_preprocess(preprocess)
    say = log or (lambda _msg: None)
    start = time.perf_counter()
    timings: dict[str, float] = {}
    device = torch.device(device)
    rank, world = _world()
    manifest = read_manifest(shard_dir)
    num_frames = int(num_frames or manifest["num_frames"])
    max_text_len = int(max_text_len or default_text_len(dataset))
    texts = eval_texts(shard_dir)
    num_videos, num_texts = len(texts.video_keys), len(texts.texts)
    gt = [[int(v)] for v in texts.text_video]
    if num_videos == 0 or num_texts == 0:
        raise ValueError(
            f"{shard_dir}: nothing to evaluate ({num_texts} texts, {num_videos} videos)"
        )

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            t0 = time.perf_counter()
            video_embeds, video_rows, video_feat = encode_videos(
                model,
                shard_dir,
                num_videos,
                num_frames=num_frames,
                batch_size=batch_size,
                device=device,
                preprocess=preprocess,
            )
            timings["videos"] = time.perf_counter() - t0
            say(f"encoded {num_videos} videos ({num_frames} frames) in {timings['videos']:.1f}s")
            t0 = time.perf_counter()
            text_embeds, text_mask, text_feat = encode_texts(
                model,
                tokenizer,
                clean_texts(texts.texts, preprocess),
                max_text_len=max_text_len,
                batch_size=max(batch_size, 64),
                device=device,
                preprocess=preprocess,
            )
            timings["texts"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            if preprocess == "vindlu":
                sims = raw_similarity(text_feat, video_feat.to(device))
            else:
                sims = model.similarity(text_feat, video_feat.to(device)).float()
            cand_t2v, cand_v2t = (m.cpu() for m in candidate_masks(sims, k))
            sims = sims.cpu()
            timings["stage1"] = time.perf_counter() - t0
            if rerank:
                scorer = ModelPairScorer(
                    model,
                    text_embeds,
                    text_mask,
                    _maybe_to_device(video_embeds, device),
                    video_rows,
                    device=device,
                    share_video_kv=(pairing == "shared")
                    if share_video_kv is None
                    else share_video_kv,
                    amp_dtype=amp_dtype(preprocess),
                )
                if pairing == "shared":
                    owned = (video_rows >= 0) if world > 1 else None
                    stage2: RerankResult = rerank_shared(
                        scorer, cand_t2v, cand_v2t, pair_batch=pair_batch, owned_videos=owned
                    )
                else:
                    stage2 = rerank_two_pass(scorer, cand_t2v, cand_v2t)
                m_t2v, m_v2t, pairs = stage2.m_t2v, stage2.m_v2t, stage2.pair_evaluations
                kv_shared = scorer.share_video_kv
                timings["stage2"] = stage2.seconds
                say(f"re-ranked {pairs} pairs ({pairing}) in {stage2.seconds:.1f}s")
            else:
                m_t2v = m_v2t = sims
                pairs, kv_shared = 0, False
    finally:
        model.train(was_training)

    t0 = time.perf_counter()
    fused = fuse_all(m_t2v, cand_t2v, cand_v2t, m_v2t, tau=tau, lam=lam)
    results = {name: retrieval_metrics(f.t2v, f.v2t, gt) for name, f in fused.items()}
    timings["fusion_metrics"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    statistics = retrieval_statistics({n: (f.t2v, f.v2t) for n, f in fused.items()}, gt)
    timings["statistics"] = time.perf_counter() - t0
    result = EvalResult(
        dataset=dataset,
        split=split,
        checkpoint=None if checkpoint is None else str(checkpoint),
        num_texts=num_texts,
        num_videos=num_videos,
        k=int(k),
        pair_evaluations=int(pairs),
        # What VindLU's two passes would compute for the same candidates.
        pair_evaluations_two_pass=int(cand_t2v.sum() + cand_v2t.sum()) if rerank else 0,
        seconds=round(time.perf_counter() - start, 3),
        timings={key: round(val, 3) for key, val in timings.items()},
        rerank=bool(rerank),
        pairing=pairing,
        share_video_kv=kv_shared,
        tau=float(tau),
        lam=float(lam),
        num_frames=num_frames,
        max_text_len=max_text_len,
        preprocess=preprocess,
        world_size=world,
        results=results,
        statistics=statistics,  # bootstrap intervals and paired tests (README.md, Evaluation)
        shards=str(shard_dir),  # where the HTML report reads its thumbnails
    )
    gt_pairs = np.array([[t, v] for t, vids in enumerate(gt) for v in vids], dtype=np.int64)
    result.scores = {f"t2v_{name}": fused[name].t2v.numpy().astype(np.float32) for name in FUSIONS}
    result.scores.update(
        gt=gt_pairs.reshape(-1, 2),
        video_keys=np.array(texts.video_keys, dtype=str),
        stage1=sims.numpy().astype(np.float32),
    )
    return result


def output_names(dataset: str, split: str) -> tuple[str, str]:
    return f"{dataset}_{split}.json", f"{dataset}_{split}_scores.npz"


def write_eval_outputs(
    result: Mapping[str, Any],
    scores: Mapping[str, np.ndarray] | None,
    out_dir: str | Path,
    *,
    html: bool = True,
) -> tuple[Path, Path]:
    """Write ``<dataset>_<split>.json`` and ``<dataset>_<split>_scores.npz`` into ``out_dir``,
    and (``html``) the visual report ``<dataset>_<split>.html`` beside them (README.md, Evaluation,
    "Visual report"); returns the JSON and npz paths.

    ``scores`` None = ``result.scores``. The npz holds ``t2v_none``, ``t2v_naive``, ``t2v_t2v2t``
    (float32 [num_texts, num_videos], higher = better), ``gt`` (int64 [P, 2] rows of (text index,
    video index): a text with several ground-truth videos has several rows), ``video_keys`` and
    ``stage1`` (the dual-encoder similarities). :func:`load_scores` reads it back.
    """
    if scores is None:
        scores = getattr(result, "scores", None)
        if scores is None:
            raise ValueError("no score matrices: pass scores= or an EvalResult")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_name, npz_name = output_names(result["dataset"], result["split"])
    json_path, npz_path = out_dir / json_name, out_dir / npz_name
    tmp = npz_path.with_name(f".{npz_name}.tmp.npz")
    np.savez_compressed(tmp, **dict(scores))
    tmp.replace(npz_path)
    tmp_json = json_path.with_name(f".{json_name}.tmp")
    tmp_json.write_text(json.dumps(dict(result), indent=1) + "\n")
    tmp_json.replace(json_path)
    if html:
        from t2v2t.retrieval.html_report import html_name, write_html_report

        write_html_report(result, scores, out_dir / html_name(result["dataset"], result["split"]))
    return json_path, npz_path


def load_scores(path: str | Path) -> tuple[dict[str, np.ndarray], list[list[int]]]:
    """Read a scores ``.npz``: (its arrays, ground truth as text -> list of video indices)."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    num_texts = arrays["t2v_none"].shape[0]
    gt: list[list[int]] = [[] for _ in range(num_texts)]
    for t, v in arrays["gt"].tolist():
        gt[t].append(v)
    return arrays, gt
