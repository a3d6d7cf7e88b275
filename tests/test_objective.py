"""The training objective: same losses and gradients as the model's former forward, settings."""

from __future__ import annotations

import pytest
import torch

from t2v2t.models import build_model, build_tokenizer
from t2v2t.models.vindlu import VindLU
from t2v2t.training import losses
from t2v2t.training.config import load_config
from t2v2t.training.losses import LossWeights
from t2v2t.training.objective import Objective

CAPTIONS = [
    "a small red circle moves slowly to the left",
    "a big blue square jumps up and down on a green background",
    "a yellow triangle",
    "two purple stars drift to the right quickly",
]
SETTINGS = [
    {"vtc": 1.0, "vtm": 1.0, "mlm": 1.0, "reverse": 0.0},
    {"vtc": 1.0, "vtm": 0.5, "mlm": 2.0, "reverse": 0.5},
    {"vtc": 0.0, "vtm": 1.0, "mlm": 0.0, "reverse": 1.0},
]
# The pre-change code path (VindLU.forward) on this model, batch and seed, recorded before the
# objective existed: loss, vtc, vtm, mlm of the first two SETTINGS. Looser than the 1e-6
# below because other CPUs' kernels round matmuls differently.
FROZEN = [
    (12.441195487976074, 1.3927395343780518, 0.7544141411781311, 10.294041633605957),
    (23.083524703979492, 1.6204769611358643, 0.8209662437438965, 10.52628231048584),
    None,
]


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(0)
    model = build_model("tiny", init="pretrained", overrides={"image_size": 32, "vision_depth": 2})
    enc = build_tokenizer("tiny")(
        CAPTIONS, padding="max_length", truncation=True, max_length=16, return_tensors="pt"
    )
    frames = torch.randn(4, 4, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    vids = torch.tensor([0, 0, 1, 2])  # a video with two captions
    return model.train(), (frames, enc["input_ids"], enc["attention_mask"], vids)


def reference_forward(model, frames, input_ids, attention_mask, video_ids, weights):
    """The model's training forward before the objective existed, line for line (same calls,
    same order of random draws), on the model's public encoders and heads."""
    w = {k: float(v) for k, v in weights.items()}
    with torch.no_grad():
        model.temp.clamp_(model.config.temp_min, model.config.temp_max)
    b = frames.shape[0]
    n_rev = 0
    if (w["vtc"] or w["vtm"]) and frames.shape[1] >= 2 and w["reverse"] > 0:
        n_rev = min(b, max(1, round(w["reverse"] * b)))
    if n_rev:
        frames = torch.cat([frames, frames[:n_rev].flip(1)])
    video_embeds, video_feat = model.encode_video(frames)
    text_embeds, text_feat = model.encode_text(input_ids, attention_mask)
    temp = model.temperature()
    zero = video_feat.new_zeros((), dtype=torch.float32)
    parts = {"vtc": zero, "vtm": zero, "mlm": zero}
    video_mean = video_feat.mean(1)
    if w["vtc"]:
        parts["vtc"] = losses.vtc_loss(
            text_feat,
            video_mean[:b],
            video_ids,
            temp,
            negative_videos=video_mean[b:] if n_rev else None,
        )
    if w["vtm"]:
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            sim = text_feat.float() @ video_mean[:b].float().t() / temp
            pos = losses.positive_mask(video_ids, video_ids)
            neg_video, ok_t = losses.sample_hard_negatives(sim, pos)
            neg_text, ok_v = losses.sample_hard_negatives(sim.t(), pos)
        rows = torch.arange(b)
        t_idx = torch.cat([rows, rows[ok_t], neg_text[ok_v], rows[:n_rev]])
        v_idx = torch.cat([rows, neg_video[ok_t], rows[ok_v], b + rows[:n_rev]])
        fused = model.fusion(text_embeds[t_idx], attention_mask[t_idx], video_embeds, v_idx)
        logits = model.itm_head(fused[:, 0])
        labels = torch.zeros(len(t_idx), dtype=torch.long)
        labels[:b] = 1
        parts["vtm"] = losses.vtm_loss(logits, labels)
    if w["mlm"]:
        c = model.config
        tok = build_tokenizer("tiny")
        masked, labels = losses.mask_tokens(
            input_ids,
            attention_mask,
            mask_prob=c.mlm_prob,
            mask_token_id=c.mask_token_id,
            vocab_size=c.vocab_size,
            # VindLU's MLMLoss.mask: every token may be picked but [PAD] and [CLS]
            special_ids=(tok.pad_token_id, tok.cls_token_id),
        )
        hidden = model.fusion(model.text(masked, attention_mask), attention_mask, video_embeds[:b])
        picked = labels != -100
        parts["mlm"] = losses.mlm_loss(model.mlm_head(hidden[picked]), labels[picked])
    total = w["vtc"] * parts["vtc"] + w["vtm"] * parts["vtm"] + w["mlm"] * parts["mlm"]
    return {"loss": total, **{k: v.detach() for k, v in parts.items()}}


def _losses_and_grads(model, fn) -> tuple[dict[str, float], list[torch.Tensor]]:
    torch.manual_seed(7)  # the same masks, hard negatives and dropout for both paths
    out = fn()
    model.zero_grad()
    out["loss"].backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    return {k: float(v.detach()) for k, v in out.items()}, grads


@pytest.mark.parametrize("index", range(len(SETTINGS)))
def test_objective_equals_the_former_model_forward(batch, index: int) -> None:
    model, data = batch
    settings = SETTINGS[index]
    objective = Objective.from_config(model, settings)
    got, got_grads = _losses_and_grads(model, lambda: objective(*data))
    want, want_grads = _losses_and_grads(model, lambda: reference_forward(model, *data, settings))
    for k in ("loss", "vtc", "vtm", "mlm"):
        assert got[k] == pytest.approx(want[k], rel=1e-6, abs=1e-6), k
    assert len(got_grads) == len(want_grads) > 0
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    if FROZEN[index] is not None:
        frozen = dict(zip(("loss", "vtc", "vtm", "mlm"), FROZEN[index], strict=True))
        # MLM (and so the total) changed on purpose since: [SEP] may be masked, as in VindLU.
        for k, v in ((k, frozen[k]) for k in ("vtc", "vtm")):
            assert got[k] == pytest.approx(v, rel=1e-4), k
    # Disabled terms are exact zeros, enabled ones are real losses.
    for k in ("vtc", "vtm", "mlm"):
        assert (got[k] > 0) == bool(settings[k]), k


def test_the_model_computes_features_not_losses() -> None:
    """A batch goes model -> objective once: the model has no training forward of its own."""
    assert "forward" not in VindLU.__dict__
    for name in ("encode_video", "encode_text", "cross_encode", "itm_logits", "mlm_logits"):
        assert callable(getattr(VindLU, name)), name


def test_reverse_is_an_objective_setting_from_the_loss_section() -> None:
    cfg = load_config("pretrain", "tiny", ["loss.reverse=0.25", "loss.mlm=0"])
    objective = Objective.from_config(torch.nn.Identity(), cfg.loss)
    assert objective.weights == LossWeights(vtc=1.0, vtm=1.0, mlm=0.0)
    assert objective.reverse == 0.25
    assert objective.reversed_count(16, 4) == 4
    assert objective.reversed_count(2, 4) == 1  # any share > 0 reverses at least one video
    assert objective.reversed_count(16, 1) == 0  # still images have no order
    assert Objective(torch.nn.Identity(), reverse=1.0).reversed_count(5, 12) == 5
    assert Objective(torch.nn.Identity()).reversed_count(16, 4) == 0
    # Reversed videos are negatives of VTC and VTM only: with both off there are none.
    mlm_only = Objective(torch.nn.Identity(), LossWeights(0.0, 0.0, 1.0), reverse=1.0)
    assert mlm_only.reversed_count(8, 4) == 0
    with pytest.raises(ValueError, match="reverse"):
        Objective(torch.nn.Identity(), reverse=1.5)
    with pytest.raises(ValueError, match="itc"):
        Objective.from_config(torch.nn.Identity(), {"itc": 1.0})


def test_mlm_masks_as_vindlu_sep_yes_cls_and_pad_never(batch) -> None:
    """VindLU's rule: Bernoulli(p) over every position, then [PAD] and [CLS] unpicked; so [SEP]
    is picked at rate p like any word, [CLS] and padding never."""
    from t2v2t.training.objective import mlm_never_masked

    model, (_, ids, mask, _) = batch
    tok = build_tokenizer("tiny")
    c = model.config
    assert set(mlm_never_masked(c)) == {tok.pad_token_id, tok.cls_token_id}
    g = torch.Generator().manual_seed(3)
    picked_sep = picked_cls = picked_pad = total_sep = 0
    for _ in range(200):
        _, labels = losses.mask_tokens(
            ids, mask, mask_prob=0.5, mask_token_id=c.mask_token_id, vocab_size=c.vocab_size,
            special_ids=mlm_never_masked(c), generator=g,
        )  # fmt: skip
        picked = labels != -100
        picked_sep += int(picked[ids == tok.sep_token_id].sum())
        total_sep += int((ids == tok.sep_token_id).sum())
        picked_cls += int(picked[ids == tok.cls_token_id].sum())
        picked_pad += int(picked[ids == tok.pad_token_id].sum())
    assert picked_cls == 0 and picked_pad == 0
    assert picked_sep / total_sep == pytest.approx(0.5, abs=0.06)
