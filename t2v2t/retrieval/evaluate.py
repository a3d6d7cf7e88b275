"""Retrieval evaluation: encode -> stage 1 (VTC top-k) -> stage 2 (VTM, shared pairs) -> result.

:func:`evaluate_retrieval` takes one :class:`~t2v2t.retrieval.settings.EvalConfig` (the settings of
training's per-epoch evaluation and of the eval commands) and returns the result JSON (every
fusion, both directions) as an :class:`EvalResult` — a plain ``dict`` (JSON-serialisable as it
is) whose ``scores`` attribute holds the matrices; :func:`write_eval_outputs` writes
``<dataset>_<split>.json`` and ``<dataset>_<split>_scores.npz``. The shard folder is opened once
(one manifest read) and each shard's bytes pass once, frames and captions together. Under
``torch.distributed`` every rank encodes its share of the videos (the eval loader splits them)
and scores the candidate pairs of those videos; features, captions and pair logits are gathered,
so every rank returns the same result as one process would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2v2t.data.augment import normalize
from t2v2t.data.eval_loader import EvalShards, EvalTexts, make_eval_loader, open_eval_shards
from t2v2t.dist import all_gather_objects, group_rank_world
from t2v2t.progress import progress
from t2v2t.recipes import text_len
from t2v2t.retrieval.bank import bank_features
from t2v2t.retrieval.compare import ScoreInputs, compare, read_params
from t2v2t.retrieval.fusion import FUSIONS, candidate_masks, fuse_all
from t2v2t.retrieval.html_report import html_name, write_html_report
from t2v2t.retrieval.metrics import retrieval_metrics
from t2v2t.retrieval.posthoc_rerank import compare_reranked
from t2v2t.retrieval.preprocess import amp_dtype, autocast_for, clean_texts, raw_similarity
from t2v2t.retrieval.rerank import ModelPairScorer, rerank_shared, rerank_two_pass
from t2v2t.retrieval.settings import EvalConfig, check_eval
from t2v2t.retrieval.stats import retrieval_statistics
from t2v2t.typed_yaml import ConfigError

PAIRINGS = ("shared", "two_pass")
BANK_CHUNK = 512  # bank captions encoded at a time
TEXT_BATCH = 64  # texts per text-encoder call, at least (they are short)


class EvalResult(dict):
    """The result JSON (a dict); ``.scores`` carries the arrays written to the ``.npz`` and
    ``.texts`` the captions (for the visual report; not in the JSON)."""

    scores: dict[str, np.ndarray]
    texts: list[str]


def default_text_len(dataset: str) -> int:
    """32 tokens for sentence datasets, 64 for paragraph ones (the recipe table's)."""
    return text_len(dataset)


def resolve_settings(settings: EvalConfig) -> EvalConfig:
    """Checked settings with what needs no files filled in: the text length from the recipe
    table, ``preprocess=auto`` as ``project`` (a model in memory is the project's; the eval
    commands resolve ``auto`` against the checkpoint before they get here)."""
    check_eval(settings)
    for name, example in (("dataset", "msrvtt"), ("shards", "shards/msrvtt/test_12f")):
        if not getattr(settings, name):
            raise ConfigError(f"eval.{name} is not set (e.g. eval.{name}={example})")
    return dataclasses.replace(
        settings,
        preprocess="project" if settings.preprocess == "auto" else settings.preprocess,
        max_text_len=int(settings.max_text_len or text_len(str(settings.dataset))),
    )


@dataclass
class EncodedVideos:
    """This rank's video embeddings; every video's features and captions, gathered."""

    embeds: torch.Tensor  # [n, T*(N+1), Dv]: the videos this rank encoded
    rows: torch.Tensor  # [Nv]: global video index -> row of ``embeds``, -1 = another rank's
    feat: torch.Tensor  # [Nv, T, E]: every video
    texts: EvalTexts  # every caption, in manifest order


@dataclass
class Encoded:
    """What the two stages need: the videos and every text's embeddings."""

    videos: EncodedVideos
    text_embeds: torch.Tensor  # [Nt, L, D]
    text_mask: torch.Tensor  # [Nt, L]
    text_feat: torch.Tensor  # [Nt, E]


@dataclass
class Stage1:
    sims: torch.Tensor  # [Nt, Nv] dual-encoder similarities, on the CPU
    cand_t2v: torch.Tensor  # [Nt, Nv] bool: each text's top-k videos
    cand_v2t: torch.Tensor  # [Nt, Nv] bool: each video's top-k texts


@dataclass
class Stage2:
    m_t2v: torch.Tensor  # pair scores the fusions use (the stage-1 matrix without re-ranking)
    m_v2t: torch.Tensor
    pairs: int  # VTM pair evaluations, all ranks together
    kv_shared: bool
    seconds: float


@contextlib.contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - t0


@contextlib.contextmanager
def _inference(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no autograd for the duration; the model's mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def encode_videos(
    model: torch.nn.Module,
    shards: str | Path | EvalShards,
    *,
    num_frames: int,
    batch_size: int,
    device: torch.device,
    preprocess: str = "project",
) -> EncodedVideos:
    """This rank's videos encoded in one pass over its shards, which also yields the captions;
    features and captions are then gathered from all ranks."""
    shards = open_eval_shards(shards)
    rank, world = group_rank_world()
    cfg = model.config
    loader = make_eval_loader(
        shards, batch_size=batch_size, num_frames=num_frames, image_size=cfg.image_size,
        rank=rank, world_size=world, preprocess=preprocess,
    )  # fmt: skip
    embeds, feats, index, keys, captions = [], [], [], [], []
    # Stored in the autocast dtype on GPUs: half the memory for the stage-2 pairs.
    store = amp_dtype(preprocess) if device.type == "cuda" else torch.float32
    for batch in progress(loader, desc="eval: encode videos", unit="batch"):
        frames = normalize(batch["frames"].to(device, non_blocking=True), cfg.mean, cfg.std)
        with autocast_for(device, preprocess):
            video_embeds, video_feat = model.encode_video(frames)
        embeds.append(video_embeds.to(store).cpu())
        feats.append(video_feat.float().cpu())
        index.append(batch["index"].cpu().long())
        keys += batch["keys"]
        captions += batch["captions"]
    local_index = torch.cat(index) if index else torch.zeros(0, dtype=torch.long)
    local_feat = torch.cat(feats) if feats else torch.zeros(0)
    feat, texts = _gather_videos(shards, local_index, local_feat, keys, captions)
    rows = torch.full((shards.num_videos,), -1, dtype=torch.long)
    rows[local_index] = torch.arange(len(local_index))
    local_embeds = torch.cat(embeds) if embeds else torch.zeros(0)
    return EncodedVideos(embeds=local_embeds, rows=rows, feat=feat, texts=texts)


def _gather_videos(
    shards: EvalShards,
    index: torch.Tensor,
    feat: torch.Tensor,
    keys: list[str],
    captions: list[list[str]],
) -> tuple[torch.Tensor, EvalTexts]:
    """Every rank's (manifest positions, features, keys, captions) -> all videos', in order."""
    n = shards.num_videos
    video_feat = None
    seen = torch.zeros(n, dtype=torch.long)
    all_keys, all_captions = [""] * n, [[] for _ in range(n)]
    for idx, part, ks, caps in all_gather_objects((index, feat, keys, captions)):
        if len(idx) == 0:
            continue
        if video_feat is None:
            video_feat = torch.zeros((n, *part.shape[1:]), dtype=torch.float32)
        video_feat[idx] = part
        seen[idx] += 1
        for i, key, cap in zip(idx.tolist(), ks, caps, strict=True):
            all_keys[i], all_captions[i] = key, cap
    if video_feat is None or not bool((seen == 1).all()):
        bad = torch.nonzero(seen != 1).flatten()[:5].tolist()
        raise RuntimeError(
            f"{shards.directory}: the eval loader must yield every video exactly once across "
            f"ranks; videos {bad} were seen {[int(seen[i]) for i in bad]} times"
        )
    return video_feat, EvalTexts.of_videos(all_keys, all_captions)


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
        with autocast_for(device, preprocess):
            text_embeds, text_feat = model.encode_text(ids, mask)
        embeds.append(text_embeds)
        masks.append(mask)
        feats.append(text_feat.float())
    return torch.cat(embeds), torch.cat(masks), torch.cat(feats)


def encode(
    model: torch.nn.Module,
    tokenizer: Any,
    shards: EvalShards,
    s: EvalConfig,
    device: torch.device,
    timings: dict[str, float],
    say: Callable[[str], None],
) -> Encoded:
    """Step 1: the videos (and with them the captions), then every text."""
    with _timed(timings, "videos"):
        videos = encode_videos(
            model, shards, num_frames=int(s.num_frames or shards.num_frames),
            batch_size=s.batch_size, device=device, preprocess=s.preprocess,
        )  # fmt: skip
    say(f"encoded {shards.num_videos} videos ({s.num_frames} frames) in {timings['videos']:.1f}s")
    if not videos.texts.texts:
        raise ValueError(
            f"{shards.directory}: nothing to evaluate (0 texts, {shards.num_videos} videos)"
        )
    with _timed(timings, "texts"):
        text_embeds, text_mask, text_feat = encode_texts(
            model,
            tokenizer,
            clean_texts(videos.texts.texts, s.preprocess),
            max_text_len=int(s.max_text_len or text_len(str(s.dataset))),
            batch_size=max(s.batch_size, TEXT_BATCH),
            device=device,
            preprocess=s.preprocess,
        )
    return Encoded(videos, text_embeds, text_mask, text_feat)


def stage1_similarity(
    model: torch.nn.Module, text_feat: torch.Tensor, video_feat: torch.Tensor, s: EvalConfig
) -> torch.Tensor:
    """[texts, videos] dual-encoder scores: raw cosines for VindLU's preprocessing, else the
    model's temperature-scaled similarity."""
    if s.preprocess == "vindlu":
        return raw_similarity(text_feat, video_feat)
    return model.similarity(text_feat, video_feat).float()


def posthoc_step(
    model: torch.nn.Module,
    tokenizer: Any,
    enc: Encoded,
    st1: Stage1,
    s: EvalConfig,
    device: torch.device,
    *,
    checkpoint: str | None,
    bank_cache: str | Path | None,
    st2: Stage2 | None = None,
) -> dict[str, Any]:
    """Every post-hoc method on the stage-1 matrix, with the training-caption bank when
    ``eval.bank`` names one, and (``st2``: re-ranked logits) those that apply over stage 2's
    candidate logits, under ``reranked`` (docs/evaluation.md, "Which fusion?")."""

    def encode(texts: list[str]) -> torch.Tensor:
        feats = []
        for start in range(0, len(texts), BANK_CHUNK):  # bounded [n, L, D] token embeddings
            chunk = clean_texts(texts[start : start + BANK_CHUNK], s.preprocess)
            feats.append(
                encode_texts(
                    model, tokenizer, chunk, max_text_len=int(s.max_text_len or 32),
                    batch_size=max(s.batch_size, TEXT_BATCH), device=device,
                    preprocess=s.preprocess,
                )[2].cpu()
            )  # fmt: skip
        return torch.cat(feats)

    def encode_bank_videos(shards: EvalShards) -> torch.Tensor:
        frames = int(s.num_frames or shards.num_frames)
        return encode_videos(
            model, shards, num_frames=frames, batch_size=s.batch_size, device=device,
            preprocess=s.preprocess,
        ).feat  # fmt: skip

    got = bank_features(s, checkpoint, bank_cache, encode, encode_bank_videos)
    bank = video_bank = None
    if got is not None:
        video_feat = enc.videos.feat.to(device)
        bank = stage1_similarity(model, got[0].to(device), video_feat, s).cpu().double()
        if got[1] is not None:  # [bank videos, test texts]
            sims = stage1_similarity(model, enc.text_feat, got[1].to(device), s)
            video_bank = sims.T.cpu().double()
    gt = [[int(v)] for v in enc.videos.texts.text_video]
    inputs = ScoreInputs(sims=st1.sims.double(), gt=gt, bank=bank, video_bank=video_bank)
    params = read_params(s.fusion_params)
    result = compare(inputs, params)
    result["bank"] = None if got is None else got[2]
    result["fusion_params"] = s.fusion_params
    if st2 is not None:  # the same methods over stage 2's re-ranked candidate logits
        result["reranked"] = compare_reranked(
            st2.m_t2v.cpu().double(), st2.m_v2t.cpu().double(), st1.cand_t2v, st1.cand_v2t,
            gt, params, tau=s.tau, lam=s.lam,
        )  # fmt: skip
    return result


def stage1(model: torch.nn.Module, enc: Encoded, s: EvalConfig, device: torch.device) -> Stage1:
    """Step 2: dual-encoder similarities and each direction's top-k candidates."""
    sims = stage1_similarity(model, enc.text_feat, enc.videos.feat.to(device), s)
    cand_t2v, cand_v2t = (m.cpu() for m in candidate_masks(sims, s.k))
    return Stage1(sims=sims.cpu(), cand_t2v=cand_t2v, cand_v2t=cand_v2t)


def _maybe_to_device(t: torch.Tensor, device: torch.device, share: float = 0.4) -> torch.Tensor:
    # Video embeddings stay on the host when they would crowd the GPU (32-frame ActivityNet
    # with the base model is ~10 MB a video); the scorer then moves each chunk's videos once.
    if device.type != "cuda":
        return t
    free, _ = torch.cuda.mem_get_info(device)
    return t.to(device) if t.numel() * t.element_size() < share * free else t


def stage2(
    model: torch.nn.Module, enc: Encoded, st1: Stage1, s: EvalConfig, device: torch.device
) -> Stage2:
    """Step 3: VTM scores of the candidate pairs (``rerank=False``: the stage-1 matrix)."""
    if not s.rerank:
        return Stage2(m_t2v=st1.sims, m_v2t=st1.sims, pairs=0, kv_shared=False, seconds=0.0)
    videos = enc.videos
    scorer = ModelPairScorer(
        model, enc.text_embeds, enc.text_mask, _maybe_to_device(videos.embeds, device),
        videos.rows, device=device, preprocess=s.preprocess,
        share_video_kv=(s.pairing == "shared") if s.share_video_kv is None else s.share_video_kv,
    )  # fmt: skip
    if s.pairing == "shared":
        owned = (videos.rows >= 0) if group_rank_world()[1] > 1 else None
        r = rerank_shared(
            scorer, st1.cand_t2v, st1.cand_v2t, pair_batch=s.pair_batch, owned_videos=owned
        )
    else:
        r = rerank_two_pass(scorer, st1.cand_t2v, st1.cand_v2t)
    return Stage2(r.m_t2v, r.m_v2t, r.pair_evaluations, scorer.share_video_kv, r.seconds)


def evaluate_retrieval(
    model: torch.nn.Module,
    tokenizer: Any,
    settings: EvalConfig,
    *,
    device: str | torch.device = "cpu",
    checkpoint: str | None = None,
    log: Callable[[str], None] | None = None,
    bank_cache: str | Path | None = None,
) -> EvalResult:
    """Two-stage retrieval on the shard folder ``settings.shards``; all three fusions; writes
    nothing. The settings (:class:`~t2v2t.retrieval.settings.EvalConfig`) say what runs: ``k``
    candidates, ``rerank`` (False: the fusions over stage-1 scores), ``pairing`` (``shared``:
    each pair once, or ``two_pass``: VindLU's baseline), ``preprocess`` (``project`` or
    ``vindlu``: VindLU's frames, caption cleaning, raw stage-1 cosines and fp16, see
    :mod:`t2v2t.retrieval.preprocess`), ``num_frames`` (None: the shards') and ``max_text_len``
    (None: the recipe table's). ``checkpoint`` is recorded in the result.
    """
    start = time.perf_counter()
    say = log or (lambda _msg: None)
    device = torch.device(device)
    s = resolve_settings(settings)
    shards = open_eval_shards(str(s.shards))  # the evaluation's one manifest read
    s = dataclasses.replace(s, num_frames=int(s.num_frames or shards.num_frames))
    if shards.num_videos == 0:
        raise ValueError(f"{shards.directory}: nothing to evaluate (0 videos)")
    timings: dict[str, float] = {}
    with _inference(model):
        enc = encode(model, tokenizer, shards, s, device, timings, say)
        with _timed(timings, "stage1"):
            st1 = stage1(model, enc, s, device)
        st2 = stage2(model, enc, st1, s, device)
        posthoc = None
        if s.posthoc:
            with _timed(timings, "posthoc"):
                posthoc = posthoc_step(
                    model, tokenizer, enc, st1, s, device, checkpoint=checkpoint,
                    bank_cache=bank_cache, st2=st2 if s.rerank else None,
                )  # fmt: skip
    if s.rerank:
        timings["stage2"] = st2.seconds
        say(f"re-ranked {st2.pairs} pairs ({s.pairing}) in {st2.seconds:.1f}s")
    result = build_result(s, enc, st1, st2, checkpoint=checkpoint, timings=timings, start=start)
    if posthoc is not None:
        # On the stage-1 matrix, and under "reranked" on stage 2's logits (docs/evaluation.md,
        # "Which fusion?").
        result["posthoc"] = posthoc
    return result


def build_result(
    s: EvalConfig,
    enc: Encoded,
    st1: Stage1,
    st2: Stage2,
    *,
    checkpoint: str | None,
    timings: dict[str, float],
    start: float,
) -> EvalResult:
    """Step 4: the three fusions, their metrics and statistics, as the result JSON."""
    texts = enc.videos.texts
    gt = [[int(v)] for v in texts.text_video]
    with _timed(timings, "fusion_metrics"):
        fused = fuse_all(st2.m_t2v, st1.cand_t2v, st1.cand_v2t, st2.m_v2t, tau=s.tau, lam=s.lam)
        results = {name: retrieval_metrics(f.t2v, f.v2t, gt) for name, f in fused.items()}
    with _timed(timings, "statistics"):
        statistics = retrieval_statistics({n: (f.t2v, f.v2t) for n, f in fused.items()}, gt)
    result = EvalResult(
        dataset=s.dataset,
        split=s.split,
        checkpoint=None if checkpoint is None else str(checkpoint),
        num_texts=len(texts.texts),
        num_videos=len(texts.video_keys),
        k=int(s.k),
        pair_evaluations=int(st2.pairs),
        # What VindLU's two passes would compute for the same candidates.
        pair_evaluations_two_pass=(int(st1.cand_t2v.sum() + st1.cand_v2t.sum()) if s.rerank else 0),
        seconds=round(time.perf_counter() - start, 3),
        timings={key: round(val, 3) for key, val in timings.items()},
        rerank=bool(s.rerank),
        pairing=s.pairing,
        share_video_kv=st2.kv_shared,
        tau=float(s.tau),
        lam=float(s.lam),
        num_frames=s.num_frames,
        max_text_len=s.max_text_len,
        preprocess=s.preprocess,
        world_size=group_rank_world()[1],
        results=results,
        # bootstrap intervals and paired tests (docs/evaluation.md, "Is a gain real?")
        statistics=statistics,
        shards=str(s.shards),  # where the HTML report reads its thumbnails
    )
    gt_pairs = np.array([[t, v] for t, vids in enumerate(gt) for v in vids], dtype=np.int64)
    result.scores = {f"t2v_{name}": fused[name].t2v.numpy().astype(np.float32) for name in FUSIONS}
    result.scores.update(
        gt=gt_pairs.reshape(-1, 2),
        video_keys=np.array(texts.video_keys, dtype=str),
        stage1=st1.sims.numpy().astype(np.float32),
    )
    result.texts = list(texts.texts)
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
    and (``html``) the visual report ``<dataset>_<split>.html`` beside them (docs/evaluation.md,
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
        page = out_dir / html_name(result["dataset"], result["split"])
        write_html_report(result, scores, page, texts=getattr(result, "texts", None))
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
