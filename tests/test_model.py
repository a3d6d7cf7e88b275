"""The VindLU model on the tiny preset with the real MiniLM weights and tokenizer."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import load_file
from transformers import BertModel

from t2v2t.data.augment import normalize
from t2v2t.models import (
    WeightsMismatchError,
    WeightsUnavailableError,
    build_model,
    build_model_from_config,
    build_tokenizer,
    load_weights,
)
from t2v2t.models.vision import VideoEncoder, create_backbone
from t2v2t.training.objective import Objective
from t2v2t.training.optim import build_optimizer

# Tiny images keep the vision side cheap on a busy 2-core machine (2x2 patches at 32 px).
SMALL = {"image_size": 32}
CAPTIONS = [
    "a small red circle moves slowly to the left",
    "a big blue square jumps up and down on a green background",
    "a yellow triangle",
    "two purple stars drift to the right quickly",
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer("tiny")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("tiny", init="pretrained", overrides=SMALL).eval()


def _text(tokenizer, texts, length=16):
    enc = tokenizer(
        texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt"
    )
    return enc["input_ids"], enc["attention_mask"]


@pytest.mark.parametrize("frames", [1, 4, 12, 32])
def test_shapes_for_frame_counts(model, tokenizer, frames):
    b, s = 2, model.config.image_size
    with torch.no_grad():
        video_embeds, video_feat = model.encode_video(torch.randn(b, frames, 3, s, s))
        ids, mask = _text(tokenizer, CAPTIONS[:b])
        text_embeds, text_feat = model.encode_text(ids, mask)
        sim = model.similarity(text_feat, video_feat)
        vtm = model.vtm_logits(text_embeds, mask, video_embeds)
    tokens = (s // 16) ** 2 + 1
    assert video_embeds.shape == (b, frames * tokens, 192)
    assert video_feat.shape == (b, frames, model.config.embed_dim)
    assert torch.allclose(video_feat.norm(dim=-1), torch.ones(b, frames), atol=1e-5)
    assert text_embeds.shape == (b, 16, 384) and text_feat.shape == (b, 256)
    assert sim.shape == (b, b) and vtm.shape == (b,)
    assert torch.isfinite(sim).all() and torch.isfinite(vtm).all()
    if frames == 1:
        # Image batches leave the temporal modules out, yet (for DDP) keep them in the graph.
        model.train()
        try:
            model.encode_video(torch.randn(b, 1, 3, s, s))[1].sum().backward()
        finally:
            model.eval()
        grads = [model.vision.temporal_pos.grad, model.vision.temporal[0].qkv.weight.grad]
        model.zero_grad()
        assert all(g is not None and not g.any() for g in grads)
    # Indexed pairs (each video's keys/values projected once) score like explicit copies.
    index = torch.tensor([1, 0])
    with torch.no_grad():
        indexed = model.vtm_logits(text_embeds, mask, video_embeds, index)
        copied = model.vtm_logits(text_embeds, mask, video_embeds[index])
    torch.testing.assert_close(indexed, copied, atol=1e-5, rtol=1e-5)


def test_temporal_position_embedding_interpolates_linearly(model):
    pos = model.vision.temporal_pos
    ramp = torch.linspace(0, 3, pos.shape[0])[:, None].expand_as(pos)
    with torch.no_grad():
        old = pos.clone()
        pos.copy_(ramp)
        try:
            same = model.vision.temporal_pos_for(pos.shape[0]).clone()
            grown = model.vision.temporal_pos_for(12)
        finally:
            pos.copy_(old)
    assert torch.equal(same, ramp)
    assert grown.shape == (12, pos.shape[1])
    steps = grown[1:, 0] - grown[:-1, 0]
    assert (steps >= -1e-6).all() and grown[0, 0] >= 0 and grown[-1, 0] <= 3 + 1e-6
    assert torch.allclose(grown[:, 0], grown[:, 1])  # same interpolation for every channel


def test_fresh_video_encoder_equals_image_backbone(model):
    """Zero-initialised temporal parts: every frame of a repeated image gives the image model's
    own features, compared against a plain timm model holding the same weights."""
    cfg = model.config
    plain = timm.create_model(
        cfg.vision_model,
        pretrained=False,
        img_size=cfg.image_size,
        depth=cfg.vision_depth,
        num_classes=0,
        **({"global_pool": cfg.vision_pool} if cfg.vision_pool else {}),
    ).eval()
    plain.load_state_dict(model.vision.backbone.state_dict())
    image = torch.randn(1, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        want_pooled = plain(image)
        want_tokens = plain.forward_features(image)
        tokens, pooled = model.vision(image[:, None].expand(1, 4, -1, -1, -1))
    for t in range(4):
        torch.testing.assert_close(pooled[0, t], want_pooled[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(tokens[0, t], want_tokens[0], atol=1e-5, rtol=1e-5)

    # The comparison can fail: once the temporal scale is non-zero, different frames mix.
    video = torch.randn(1, 4, 3, cfg.image_size, cfg.image_size)
    scales = [m.scale for m in model.vision.temporal]
    with torch.no_grad():
        _, before = model.vision(video)
        for p in scales:
            p.fill_(1.0)
        try:
            _, after = model.vision(video)
        finally:
            for p in scales:
                p.zero_()
    assert not torch.allclose(before, after, atol=1e-4)


def test_text_layers_reproduce_minilm_hidden_states(model, tokenizer, minilm_dir):
    ref = BertModel.from_pretrained(str(minilm_dir)).eval()
    ids, mask = _text(tokenizer, CAPTIONS, length=20)
    with torch.no_grad():
        hidden = ref(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        x = model.text.embeddings(input_ids=ids)
        ours = [x]
        bias = mask.bool()[:, None, None, :]
        for layer in model.text.layers:
            x = layer(x, bias)
            ours.append(x)
        text_embeds, _ = model.encode_text(ids, mask)
    assert len(model.text.layers) == 4
    valid = mask.bool()
    for k in range(5):  # embeddings and the outputs of layers 1..4
        torch.testing.assert_close(ours[k][valid], hidden[k][valid], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(text_embeds[valid], hidden[4][valid], atol=2e-5, rtol=1e-4)
    # The fusion layers carry MiniLM layers 4 and 5's pre-trained self-attention and FFN.
    for i, block in enumerate(model.fusion.layers):
        src = ref.encoder.layer[4 + i]
        assert torch.equal(block.attention.self.query.weight, src.attention.self.query.weight)
        assert torch.equal(block.output.dense.weight, src.output.dense.weight)


def test_forward_losses_and_disabled_weights(model, tokenizer):
    torch.manual_seed(1)
    s = model.config.image_size
    frames = torch.randn(4, 4, 3, s, s)
    ids, mask = _text(tokenizer, CAPTIONS)
    vids = torch.tensor([0, 0, 1, 2])  # a video with two captions
    with torch.no_grad():
        out = Objective(model)(frames, ids, mask, vids)
        only_vtc = Objective.from_config(model, {"vtc": 1.0, "vtm": 0, "mlm": 0})(
            frames, ids, mask, vids
        )
    for k in ("vtc", "vtm", "mlm"):
        assert out[k].item() > 0 and torch.isfinite(out[k])
    torch.testing.assert_close(out["loss"], out["vtc"] + out["vtm"] + out["mlm"])
    assert only_vtc["vtm"].item() == 0 and only_vtc["mlm"].item() == 0
    torch.testing.assert_close(only_vtc["loss"], only_vtc["vtc"])
    torch.testing.assert_close(only_vtc["vtc"], out["vtc"])


def test_a_few_adamw_steps_lower_every_loss(tokenizer):
    torch.manual_seed(0)
    model = build_model("tiny", init="pretrained", overrides={**SMALL, "vision_depth": 2})
    model.train()
    # The 30522-word embedding (tied to the MLM decoder) stays fixed: it dominates the CPU cost
    # of a step and every loss can still fall through the other weights.
    model.text.embeddings.word_embeddings.weight.requires_grad_(False)
    s = model.config.image_size
    # Noise around a different colour per video, so the random ViT can tell them apart.
    tint = torch.linspace(-2, 2, 4).view(4, 1, 1, 1, 1) * torch.tensor([1.0, -1.0, 0.5])
    frames = torch.randn(4, 4, 3, s, s) + tint.view(4, 1, 3, 1, 1)
    ids, mask = _text(tokenizer, CAPTIONS)
    vids = torch.tensor([0, 1, 2, 3])
    objective = Objective(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        params, lr=2e-5, weight_decay=0.0
    )  # larger first Adam steps overshoot VTC

    def losses() -> dict[str, torch.Tensor]:
        torch.manual_seed(123)  # same masks, hard negatives and dropout every time
        return objective(frames, ids, mask, vids)

    def grads() -> list[torch.Tensor]:
        blocks = (model.vision.backbone.blocks[0].attn.qkv, model.fusion.layers[0].crossattention)
        return [blocks[0].weight.grad.clone(), blocks[1].key.weight.grad.clone()]

    steps = []
    for step in range(4):
        out = losses()
        opt.zero_grad()
        out["loss"].backward()
        steps.append({k: v.item() for k, v in out.items()})
        if step == 0:
            # Gradient checkpointing changes memory, not results (RNG state is replayed).
            plain = grads()
            model.set_grad_checkpointing(True)
            opt.zero_grad()
            again = losses()
            again["loss"].backward()
            model.set_grad_checkpointing(False)
            assert again["loss"].item() == pytest.approx(steps[0]["loss"], rel=1e-5)
            for a, b in zip(plain, grads(), strict=True):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
        opt.step()
    with torch.no_grad():
        last = {k: v.item() for k, v in losses().items()}
    for k in ("loss", "vtc", "vtm", "mlm"):
        assert last[k] < steps[0][k], (k, steps, last)


def test_uint8_frames_are_normalised_with_config_mean_std(model):
    s = model.config.image_size
    raw = torch.randint(0, 256, (1, 2, 3, s, s), dtype=torch.uint8)
    mean = torch.tensor(model.config.mean).view(1, 1, 3, 1, 1)
    std = torch.tensor(model.config.std).view(1, 1, 3, 1, 1)
    with torch.no_grad():
        a = model.encode_video(raw)[1]
        b = model.encode_video((raw.float() / 255 - mean) / std)[1]
        # The loaders' normalisation, bit for bit: training and direct calls see one input.
        same = model.encode_video(normalize(raw, model.config.mean, model.config.std))[1]
    torch.testing.assert_close(a, b)
    assert torch.equal(a, same)


def test_strict_load_roundtrip_and_key_errors(model, tmp_path):
    other = build_model_from_config(model.config.to_dict())
    assert other.config == model.config and other.config.image_size == 32
    assert not torch.equal(other.itm_head.weight, model.itm_head.weight)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "preset": "tiny", "step": 3}, path)
    load_weights(other, path)
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    # Tied MLM decoder and word embeddings stay one tensor after loading.
    assert other.mlm_head.predictions.decoder.weight is other.text.embeddings.word_embeddings.weight

    bad = dict(model.state_dict())
    del bad["itm_head.bias"]
    bad["extra.weight"] = torch.zeros(1)
    with pytest.raises(WeightsMismatchError) as err:
        load_weights(other, bad)
    assert "itm_head.bias" in str(err.value) and "extra.weight" in str(err.value)

    wrong = dict(model.state_dict())
    wrong["temp"] = torch.zeros(3)
    with pytest.raises(WeightsMismatchError, match="temp"):
        load_weights(other, wrong)


def test_offline_base_without_weights_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("INIT", "T2V2T_VISION_WEIGHTS", "T2V2T_BERT_PATH"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(WeightsUnavailableError) as err:
        build_model("base")
    msg = str(err.value)
    assert "INIT=random" in msg and "T2V2T_VISION_WEIGHTS" in msg and "T2V2T_BERT_PATH" in msg

    monkeypatch.setenv("T2V2T_VISION_WEIGHTS", "/nonexistent/beit.safetensors")
    with pytest.raises(WeightsUnavailableError, match="/nonexistent/beit.safetensors"):
        build_model("base")


def test_init_env_and_unknown_init(monkeypatch):
    with pytest.raises(ValueError, match="INIT=random"):
        build_model("tiny", init="imagenet")
    with pytest.raises(ValueError, match="unknown model preset"):
        build_model("huge", init="random")


def test_base_preset_loads_local_weight_files(tmp_path, monkeypatch, minilm_dir):
    """The base preset's weight routes with small stand-ins: a timm file for the vision side
    (T2V2T_VISION_WEIGHTS) and a BERT folder for the text side (T2V2T_BERT_PATH)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("INIT", raising=False)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, depth=1, num_classes=0)
    weights = tmp_path / "vit.pth"
    torch.save(vit.state_dict(), weights)
    monkeypatch.setenv("T2V2T_VISION_WEIGHTS", str(weights))
    monkeypatch.setenv("T2V2T_BERT_PATH", str(minilm_dir))
    small = {"vision_model": "vit_tiny_patch16_224", "vision_depth": 1, "fusion_layer": 4}
    model = build_model("base", overrides={**SMALL, **small})
    for k, v in vit.state_dict().items():
        assert torch.equal(model.vision.backbone.state_dict()[k], v), k
    minilm = load_file(str(minilm_dir / "model.safetensors"))
    key = next(k for k in minilm if k.endswith("encoder.layer.2.attention.self.query.weight"))
    assert torch.equal(model.text.layers[2].attention.self.query.weight, minilm[key])


def test_init_random_is_an_argument_not_the_environment(monkeypatch, minilm_dir):
    # The Makefile's INIT is read by the train command (t2v2t/train.py), never by the library.
    monkeypatch.setenv("INIT", "random")
    minilm = load_file(str(minilm_dir / "model.safetensors"))
    key = next(k for k in minilm if k.endswith("encoder.layer.0.attention.self.query.weight"))
    model = build_model("tiny", init="random", overrides=SMALL)
    assert model.text.layers[0].attention.self.query.weight.shape == minilm[key].shape
    assert not torch.equal(model.text.layers[0].attention.self.query.weight, minilm[key])
    model = build_model("tiny", overrides=SMALL)
    assert torch.equal(model.text.layers[0].attention.self.query.weight, minilm[key])


def test_bf16_autocast_forward_keeps_losses_fp32(model, tokenizer):
    s = model.config.image_size
    ids, mask = _text(tokenizer, CAPTIONS)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = Objective(model)(torch.randn(4, 2, 3, s, s), ids, mask, torch.tensor([0, 0, 1, 2]))
    for k in ("loss", "vtc", "vtm", "mlm"):
        assert out[k].dtype == torch.float32 and torch.isfinite(out[k]), k


def test_beit_video_encoder_equals_its_image_model():
    """The base preset's BEiT path (relative position bias, mean-pooled fc_norm) with small
    stand-in sizes: a fresh video encoder reproduces the timm image model frame by frame."""
    kw = {"image_size": 32, "depth": 2, "width": 64, "heads": 2}
    torch.manual_seed(0)
    encoder = VideoEncoder(create_backbone("beit_base_patch16_224", **kw), num_frames=4).eval()
    plain = timm.create_model(
        "beit_base_patch16_224", img_size=32, depth=2, embed_dim=64, num_heads=2, num_classes=0
    ).eval()
    plain.load_state_dict(encoder.backbone.state_dict())
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want = plain(images)
        _, pooled = encoder(images[:, None].expand(3, 12, -1, -1, -1))  # 12 frames: interpolated
    for t in range(12):
        torch.testing.assert_close(pooled[:, t], want, atol=1e-5, rtol=1e-5)


def _moving_squares(colours: torch.Tensor, size: int, frames: int = 4) -> torch.Tensor:
    """[B, T, 3, S, S]: a half-frame square of each colour sliding left to right."""
    clip = torch.full((len(colours), frames, 3, size, size), -1.0)
    side = size // 2
    for t in range(frames):
        x = round(t * (size - side) / (frames - 1))
        clip[:, t, :, :side, x : x + side] = colours.view(-1, 3, 1, 1)
    return clip


def _order_margins(model, frames, ids, mask) -> torch.Tensor:
    """Per caption: stage-1 score of its own video minus that of the same frames reversed."""
    with torch.no_grad():
        _, text_feat = model.encode_text(ids, mask)
        own = model.similarity(text_feat, model.encode_video(frames)[1]).diag()
        rev = model.similarity(text_feat, model.encode_video(frames.flip(1))[1]).diag()
    return own - rev


def _train_with_reversal(tokenizer, reverse: float, steps: int = 120) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    model = build_model("tiny", init="pretrained", overrides={**SMALL, "vision_depth": 2})
    model.text.embeddings.word_embeddings.weight.requires_grad_(False)
    colours = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1]])
    frames = _moving_squares(colours, model.config.image_size)
    names = ("red", "green", "blue", "yellow")
    ids, mask = _text(tokenizer, [f"a {c} square slides to the right" for c in names])
    model.eval()
    before = _order_margins(model, frames, ids, mask)
    # The tiny presets' temporal lr multiplier: at 1x the zero-initialised temporal modules
    # barely leave zero in this many steps.
    opt = build_optimizer(model, 1e-4, 0.0, (0.9, 0.999), temporal_lr_scale=30.0)
    objective = Objective.from_config(
        model, {"vtc": 1.0, "vtm": 1.0, "mlm": 0.0, "reverse": reverse}
    )
    for _ in range(steps):
        model.train()
        out = objective(frames, ids, mask, torch.arange(4))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    model.eval()
    return before, _order_margins(model, frames, ids, mask), out["vtc"].detach()


@pytest.mark.slow  # two 120-step trainings (~100 s); tests/test_temporal.py holds the direction fast
def test_time_reversal_negatives_teach_frame_order(tokenizer):
    """A fresh encoder is order-blind: a clip and its reversal score the same, so with reversed
    clips as negatives VTC starts on a saddle (the text->video half holds a tie with the
    positive). Training leaves it: every caption ends up preferring its own frame order by a
    wide margin. Without the reversed negatives colour alone separates the batch and the
    order margins stay at zero (measured with the temporal attention after each block, one
    scalar scale per block: 6.1-9.8 vs. <= 0.03 after 120 steps; at 80 steps one caption was
    still at 0.45)."""
    before, after, vtc = _train_with_reversal(tokenizer, reverse=1.0)
    assert before.abs().max().item() < 1e-5
    assert (after > 0.5).all(), after
    assert vtc.item() < 0.2  # below the saddle's log(2)/2
    _, control, _ = _train_with_reversal(tokenizer, reverse=0.0)
    assert control.abs().max().item() < 0.1, control
