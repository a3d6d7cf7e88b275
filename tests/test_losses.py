"""VindLU's objectives against hand-computed references, and the cross-rank gather."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
import torch.nn.functional as F

from t2v2t import dist
from t2v2t.training.losses import (
    LossWeights,
    mask_tokens,
    positive_mask,
    sample_hard_negatives,
    vtc_loss,
)


def _vtc_by_hand(t: list[list[float]], v: list[list[float]], ids: list[int], temp: float):
    """Plain-Python symmetric InfoNCE with targets spread over same-id columns."""
    n = len(ids)
    sim = [
        [sum(a * b for a, b in zip(t[i], v[j], strict=True)) / temp for j in range(n)]
        for i in range(n)
    ]

    def direction(s: list[list[float]]) -> float:
        total = 0.0
        for i in range(n):
            log_z = math.log(sum(math.exp(x) for x in s[i]))
            pos = [j for j in range(n) if ids[j] == ids[i]]
            total += -sum(s[i][j] - log_z for j in pos) / len(pos)
        return total / n

    transposed = [[sim[j][i] for j in range(n)] for i in range(n)]
    return (direction(sim) + direction(transposed)) / 2


def test_vtc_matches_hand_computation_with_duplicate_ids():
    g = torch.Generator().manual_seed(0)
    t = F.normalize(torch.randn(5, 3, generator=g), dim=-1)
    v = F.normalize(torch.randn(5, 3, generator=g), dim=-1)
    ids = torch.tensor([7, 3, 7, 9, 3])  # two videos with two captions each
    got = vtc_loss(t.double(), v.double(), ids, 0.07)
    want = _vtc_by_hand(t.double().tolist(), v.double().tolist(), ids.tolist(), 0.07)
    assert got.item() == pytest.approx(want, rel=1e-9)
    # Duplicate ids matter: treating every row as its own video gives another value.
    unique = vtc_loss(t.double(), v.double(), torch.arange(5), 0.07)
    assert unique.item() != pytest.approx(want, rel=1e-6)


def test_vtc_reversed_negatives_are_extra_text_to_video_columns():
    """Time-reversed videos are negatives of every caption in text->video only: by hand, the
    text->video softmax runs over [videos | reversed], video->text is unchanged."""
    g = torch.Generator().manual_seed(2)
    t = F.normalize(torch.randn(4, 3, generator=g), dim=-1).double()
    v = F.normalize(torch.randn(4, 3, generator=g), dim=-1).double()
    r = F.normalize(torch.randn(2, 3, generator=g), dim=-1).double()
    ids, temp = torch.arange(4), 0.1
    sim = t @ v.t() / temp
    extra = t @ r.t() / temp
    t2v = -(sim.diag() - torch.logsumexp(torch.cat([sim, extra], 1), 1)).mean()
    v2t = -(sim.diag() - torch.logsumexp(sim.t(), 1)).mean()
    got = vtc_loss(t, v, ids, temp, negative_videos=r)
    assert got.item() == pytest.approx(((t2v + v2t) / 2).item(), rel=1e-9)
    assert got.item() > vtc_loss(t, v, ids, temp).item()  # more negatives, higher loss
    # A reversal identical to its original (what an order-blind encoder gives) scores as high as
    # the positive, so only order-aware features can lower this term.
    same = vtc_loss(t, v, ids, temp, negative_videos=v[:1])
    assert same.item() > vtc_loss(t, v, ids, temp).item()
    torch.testing.assert_close(
        vtc_loss(t, v, ids, temp, negative_videos=r[:0]), vtc_loss(t, v, ids, temp)
    )


def test_hard_negatives_never_pick_a_positive():
    g = torch.Generator().manual_seed(1)
    picked_any = 0
    for trial in range(300):
        n = int(torch.randint(2, 9, (1,), generator=g))
        ids = torch.randint(0, max(1, n // 2 + trial % 3), (n,), generator=g)
        # Large scales make the positive dominate the softmax (underflow must not matter).
        scale = [1.0, 50.0, 2000.0][trial % 3]
        sim = torch.randn(n, n, generator=g) * scale
        sim[positive_mask(ids, ids)] += scale * 10
        pos = positive_mask(ids, ids)
        idx, valid = sample_hard_negatives(sim, pos, generator=g)
        assert torch.equal(valid, ~pos.all(1))
        rows = torch.arange(n)[valid]
        assert not pos[rows, idx[valid]].any(), (ids, idx)
        picked_any += int(valid.sum())
    assert picked_any > 300


def test_hard_negatives_follow_the_similarity():
    sim = torch.tensor([[5.0, 4.0, 0.0, -3.0]])
    pos = torch.tensor([[True, False, False, False]])
    g = torch.Generator().manual_seed(2)
    counts = torch.zeros(4)
    for _ in range(400):
        idx, _ = sample_hard_negatives(sim, pos, generator=g)
        counts[idx] += 1
    probs = torch.softmax(torch.tensor([4.0, 0.0, -3.0]), 0)
    assert counts[0] == 0
    assert counts[1] / 400 == pytest.approx(probs[0].item(), abs=0.05)


def test_mlm_masking_rule():
    # Imported here: spawned workers below re-import this module and need no transformers.
    from t2v2t.models import build_tokenizer

    tok = build_tokenizer("tiny")
    texts = [
        "a small red circle moves slowly to the left on a blue background " * (1 + i % 3)
        for i in range(96)
    ]
    enc = tok(texts, padding="max_length", truncation=True, max_length=40, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    special = set(tok.all_special_ids)
    g = torch.Generator().manual_seed(3)
    masked, labels = mask_tokens(
        ids,
        mask,
        mask_prob=0.5,
        mask_token_id=tok.mask_token_id,
        vocab_size=len(tok),
        special_ids=special,
        generator=g,
    )
    is_special = torch.isin(ids, torch.tensor(sorted(special)))
    never = is_special | (mask == 0)
    assert never.any() and (mask == 0).any()
    assert (labels[never] == -100).all()
    assert torch.equal(masked[never], ids[never])
    picked = labels != -100
    assert torch.equal(labels[picked], ids[picked])
    assert torch.equal(masked[~picked], ids[~picked])
    n = int(picked.sum())
    assert picked.sum() / (~never).sum() == pytest.approx(0.5, abs=0.04)
    to_mask = (masked[picked] == tok.mask_token_id).float().mean().item()
    kept = (masked[picked] == ids[picked]).float().mean().item()
    other = 1 - to_mask - kept
    assert n > 1000
    assert to_mask == pytest.approx(0.8, abs=0.04)
    assert kept == pytest.approx(0.1, abs=0.03)
    assert other == pytest.approx(0.1, abs=0.03)


def test_loss_weights_from_mapping_and_objects():
    assert LossWeights.from_any(None) == LossWeights(1, 1, 1)
    assert LossWeights.from_any({"vtm": 0}) == LossWeights(1, 0, 1)

    class Cfg:
        vtc, vtm = 1.0, 2.0

    assert LossWeights.from_any(Cfg()) == LossWeights(1, 2, 0)
    with pytest.raises(ValueError, match="itc"):
        LossWeights.from_any({"itc": 1})
    # The reversed-negatives share is the objective's setting (tests/test_objective.py).
    with pytest.raises(ValueError, match="reverse"):
        LossWeights.from_any({"reverse": 0.5})


def test_single_process_helpers():
    x = torch.randn(3, 2, requires_grad=True)
    assert dist.all_gather_with_grad(x) is x
    assert dist.world_info()[1] == 1 and dist.is_main()
    wrapped = torch.nn.parallel.DistributedDataParallel.__new__(
        torch.nn.parallel.DistributedDataParallel
    )
    inner = torch.nn.Linear(2, 2)
    torch.nn.Module.__init__(wrapped)
    wrapped.module = inner
    assert dist.unwrap_model(wrapped) is inner


# ---- two real processes (gloo): the gathered VTC equals the one-process global batch --------
SIZES = (3, 2)  # unequal local batches exercise the padded gather


def _global_batch():
    g = torch.Generator().manual_seed(4)
    t = torch.randn(sum(SIZES), 4, generator=g, dtype=torch.float64)
    v = torch.randn(sum(SIZES), 4, generator=g, dtype=torch.float64)
    r = torch.randn(2, 4, generator=g, dtype=torch.float64)  # one time-reversed video per rank
    return t, v, torch.tensor([0, 1, 2, 0, 3]), r


def _worker(rank: int, world: int, folder: str) -> None:
    tdist.init_process_group("gloo", init_method=f"file://{folder}/pg", rank=rank, world_size=world)
    try:
        t, v, ids, r = _global_batch()
        lo, hi = sum(SIZES[:rank]), sum(SIZES[: rank + 1])
        tl = t[lo:hi].clone().requires_grad_(True)
        vl = v[lo:hi].clone().requires_grad_(True)
        rl = r[rank : rank + 1].clone().requires_grad_(True)
        loss = vtc_loss(tl, vl, ids[lo:hi], 0.1, negative_videos=rl)
        loss.backward()
        torch.save((loss.item(), tl.grad, vl.grad, rl.grad), f"{folder}/rank{rank}.pt")
    finally:
        tdist.destroy_process_group()


def test_vtc_gathered_across_two_ranks_with_gradients(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    t, v, ids, r = _global_batch()
    for x in (t, v, r):
        x.requires_grad_(True)
    ref = vtc_loss(t, v, ids, 0.1, gather=False, negative_videos=r)
    ref.backward()
    for rank in range(2):
        loss, gt, gv, gr = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(gr / 2, r.grad[rank : rank + 1])  # reversed videos too
        lo, hi = sum(SIZES[:rank]), sum(SIZES[: rank + 1])
        assert loss == pytest.approx(ref.item(), rel=1e-12)
        # Every rank's identical loss sends gradient to these rows: the sum is world x the
        # global loss's gradient; DDP's averaging over the 2 ranks brings it back to 1x.
        torch.testing.assert_close(gt / 2, t.grad[lo:hi])
        torch.testing.assert_close(gv / 2, v.grad[lo:hi])


# ---- VTC's gradient across ranks: VindLU's rule (local) and the summed rule (global) --------
class _Encoders(torch.nn.Module):
    """Two linear 'encoders' (text, video) feeding VTC, wrapped in DDP by the workers."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.text = torch.nn.Parameter(torch.randn(4, 3, generator=g, dtype=torch.float64))
        self.video = torch.nn.Parameter(torch.randn(4, 3, generator=g, dtype=torch.float64))

    def forward(self, t, v, ids, gather, gather_grad):  # noqa: ANN001
        tf, vf = F.normalize(t @ self.text, dim=-1), F.normalize(v @ self.video, dim=-1)
        return vtc_loss(tf, vf, ids, 0.1, gather=gather, gather_grad=gather_grad)


def _ddp_worker(rank: int, world: int, folder: str) -> None:
    tdist.init_process_group("gloo", init_method=f"file://{folder}/pg", rank=rank, world_size=world)
    try:
        t, v, ids, _ = _global_batch()
        lo, hi = sum(SIZES[:rank]), sum(SIZES[: rank + 1])
        out = {}
        for mode in dist.VTC_GATHERS:
            model = torch.nn.parallel.DistributedDataParallel(_Encoders())
            model(t[lo:hi], v[lo:hi], ids[lo:hi], True, mode).backward()
            inner = model.module
            out[mode] = (inner.text.grad.clone(), inner.video.grad.clone())
        torch.save(out, f"{folder}/ddp{rank}.pt")
    finally:
        tdist.destroy_process_group()


def test_vtc_gather_local_is_vindlus_rule_global_the_summed_one(tmp_path):
    """After DDP's averaging over W ranks, an encoder parameter's gradient is:
    global: d(global-batch loss)/d(param);  local (VindLU's AllGather, whose backward returns
    rank r's rows of d(loss)/d(gathered features) unsummed): (1/W) sum_r J_r^T slice_r(dL/dF)
    = d(global-batch loss)/d(param) / W. The two differ by the factor W = 2."""
    world = 2
    mp.spawn(_ddp_worker, args=(world, str(tmp_path)), nprocs=world, join=True)
    t, v, ids, _ = _global_batch()
    ref = _Encoders()
    ref(t, v, ids, False, "global").backward()
    full = (ref.text.grad, ref.video.grad)
    for rank in range(world):
        got = torch.load(tmp_path / f"ddp{rank}.pt", weights_only=True)
        for g_global, g_local, g_ref in zip(got["global"], got["local"], full, strict=True):
            torch.testing.assert_close(g_global, g_ref)
            torch.testing.assert_close(g_local, g_ref / world)
            torch.testing.assert_close(g_global, world * g_local)
            assert not torch.allclose(g_global, g_local)


def test_vtc_gather_mode_is_checked():
    x = torch.randn(2, 3)
    assert dist.all_gather_with_grad(x, "local") is x
    with pytest.raises(ValueError, match="local, global"):
        dist.all_gather_with_grad(x, "sum")
