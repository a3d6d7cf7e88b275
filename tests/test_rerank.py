"""Shared-pair re-ranking vs VindLU's two passes: same scores, fewer VTM pair evaluations."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from t2v2t.retrieval.fusion import candidate_masks, fuse_all
from t2v2t.retrieval.rerank import (
    ModelPairScorer,
    rerank_shared,
    rerank_two_pass,
    score_pairs,
    shared_pairs,
)


class BilinearVTM(torch.nn.Module):
    """A small deterministic module with the model's ``vtm_logits`` interface."""

    def __init__(self, dim: int = 8, vdim: int = 6) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.w = torch.nn.Parameter(torch.randn(dim, vdim, generator=gen))

    def vtm_logits(self, text_embeds, text_mask, video_embeds):
        m = text_mask.unsqueeze(-1).float()
        t = (text_embeds * m).sum(1) / m.sum(1).clamp(min=1)
        return torch.einsum("bd,de,be->b", t, self.w, video_embeds.mean(1))


def make_case(nt=13, nv=11, seed=0):
    gen = torch.Generator().manual_seed(seed)
    text_embeds = torch.randn(nt, 5, 8, generator=gen)
    text_mask = (torch.arange(5)[None, :] < torch.randint(1, 6, (nt, 1), generator=gen)).long()
    video_embeds = torch.randn(nv, 7, 6, generator=gen)
    sims = torch.randn(nt, nv, generator=gen)
    return text_embeds, text_mask, video_embeds, sims


def test_shared_pairs_union_sorted_by_video():
    *_, sims = make_case()
    a, b = candidate_masks(sims, 4)
    t, v = shared_pairs(a, b)
    assert len(t) == int((a | b).sum())
    assert (a | b)[t, v].all()
    key = v * 1000 + t
    assert torch.equal(key, key.sort().values)  # video-major, then text


@pytest.mark.parametrize("k", [3, 20])
def test_shared_equals_two_pass_and_counts_fewer(k):
    text_embeds, text_mask, video_embeds, sims = make_case()
    model = BilinearVTM()
    scorer = ModelPairScorer(model, text_embeds, text_mask, video_embeds)
    a, b = candidate_masks(sims, k)
    shared = rerank_shared(scorer, a, b, pair_batch=5)
    two = rerank_two_pass(scorer, a, b)
    assert torch.allclose(shared.m_t2v[a], two.m_t2v[a], atol=1e-5)
    assert torch.allclose(shared.m_v2t[b], two.m_v2t[b], atol=1e-5)
    assert shared.pair_evaluations == int((a | b).sum())
    assert two.pair_evaluations == int(a.sum() + b.sum())
    assert shared.pair_evaluations < two.pair_evaluations
    if k >= 13:  # every pair is a candidate both ways: exactly half the work
        assert two.pair_evaluations == 2 * shared.pair_evaluations
    # Same fused scores from either way of computing the pairs.
    for name, fused in fuse_all(shared.m_t2v, a, b).items():
        other = fuse_all(two.m_t2v, a, b, two.m_v2t)[name]
        assert torch.allclose(fused.t2v, other.t2v, atol=1e-4), name
    # Direct check of one pair against the module.
    t, v = 2, int(torch.nonzero(a[2])[0])
    direct = model.vtm_logits(text_embeds[[t]], text_mask[[t]], video_embeds[[v]])
    assert shared.m_t2v[t, v].item() == pytest.approx(direct.item(), abs=1e-5)


def test_scorer_refuses_videos_it_does_not_hold():
    text_embeds, text_mask, video_embeds, _ = make_case()
    rows = torch.tensor([0, 1, -1] + [-1] * 8)
    scorer = ModelPairScorer(BilinearVTM(), text_embeds, text_mask, video_embeds[:2], rows)
    assert scorer(torch.tensor([0, 1]), torch.tensor([1, 0])).shape == (2,)
    with pytest.raises(RuntimeError, match="not held"):
        scorer(torch.tensor([0]), torch.tensor([2]))
    with pytest.raises(ValueError, match="pair_batch"):
        score_pairs(scorer, torch.tensor([0]), torch.tensor([0]), pair_batch=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dist_worker(rank: int, world: int, port: int, k: int, out_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        text_embeds, text_mask, video_embeds, sims = make_case()
        nv = len(video_embeds)
        owned = torch.arange(nv) % world == rank  # as the eval loader splits videos
        rows = torch.full((nv,), -1)
        rows[owned] = torch.arange(int(owned.sum()))
        scorer = ModelPairScorer(BilinearVTM(), text_embeds, text_mask, video_embeds[owned], rows)
        a, b = candidate_masks(sims, k)
        by_video = rerank_shared(scorer, a, b, pair_batch=4, owned_videos=owned)
        full = ModelPairScorer(BilinearVTM(), text_embeds, text_mask, video_embeds)
        by_block = rerank_shared(full, a, b, pair_batch=4)
        torch.save(
            {
                "video": by_video.m_t2v,
                "block": by_block.m_t2v,
                "n": by_video.pair_evaluations,
                "mine": scorer.pairs,
            },
            f"{out_path}.{rank}",
        )
    finally:
        dist.destroy_process_group()


def test_distributed_matches_one_process(tmp_path):
    text_embeds, text_mask, video_embeds, sims = make_case()
    a, b = candidate_masks(sims, 4)
    single = rerank_shared(
        ModelPairScorer(BilinearVTM(), text_embeds, text_mask, video_embeds), a, b
    )
    out = str(tmp_path / "res")
    mp.spawn(_dist_worker, args=(2, _free_port(), 4, out), nprocs=2, join=True)
    results = [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]
    known = ~torch.isnan(single.m_t2v)
    for res in results:
        assert res["n"] == single.pair_evaluations
        for key in ("video", "block"):
            assert torch.equal(torch.isnan(res[key]), ~known)
            assert torch.allclose(res[key][known], single.m_t2v[known], atol=1e-5)
    assert results[0]["mine"] + results[1]["mine"] == single.pair_evaluations
    assert min(r["mine"] for r in results) > 0  # both ranks did part of the work
