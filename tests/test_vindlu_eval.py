"""VindLU's evaluation preprocessing (eval.preprocess=vindlu) and exported folders."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from t2v2t.retrieval.preprocess import default_preprocess, pre_text, raw_similarity
from tests.test_evaluate import SIZE, _eval, _save_checkpoint, write_eval_shards


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("A Man, playing the Guitar!", "a man playing the guitar"),
        ('he said "hi" (twice) *#:;~', "he said hi twice"),
        ("a well-known red/blue car", "a well known red blue car"),
        ("<person> is   talking\n", "person is talking"),
        ("  it's   the   end.  ", "its the end"),
    ],
)
def test_pre_text_cleans_like_vindlu(raw, clean):
    assert pre_text(raw) == clean


def test_pre_text_truncates_words():
    assert pre_text("One two, three four", max_words=2) == "one two"
    assert pre_text("one two", max_words=5) == "one two"


def test_squash_bicubic_matches_torchvision_and_ignores_aspect():
    import torchvision.transforms.functional as TF

    from t2v2t.data.augment import squash_bicubic

    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (2, 40, 70, 3), dtype=torch.uint8, generator=g)
    ours = squash_bicubic(frames, 32)
    assert ours.shape == (2, 32, 32, 3) and ours.dtype == torch.uint8
    ref = TF.resize(
        frames.permute(0, 3, 1, 2),
        [32, 32],
        interpolation=TF.InterpolationMode.BICUBIC,
        antialias=False,
    ).permute(0, 2, 3, 1)
    assert (ours.int() - ref.int()).abs().max() <= 1
    # Not bilinear: the two kernels differ on random pixels.
    bil = torch.nn.functional.interpolate(
        frames.permute(0, 3, 1, 2).float(), size=(32, 32), mode="bilinear", align_corners=False
    )
    assert (ours.permute(0, 3, 1, 2).float() - bil.round()).abs().max() > 2
    # Squash, not crop: a left-red / right-blue frame keeps both halves.
    two = torch.zeros((1, 20, 60, 3), dtype=torch.uint8)
    two[:, :, :30, 0] = 255
    two[:, :, 30:, 2] = 255
    sq = squash_bicubic(two, 16)
    assert sq[0, :, :6, 0].min() > 200 and sq[0, :, 10:, 2].min() > 200
    # Already the model's size: returned unchanged.
    same = frames[:, :32, :32].contiguous()
    assert squash_bicubic(same, 32) is same


def _jpeg_frame(h, w, seed):
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_decode_jpegs_bicubic_squash_of_wide_frames():
    from t2v2t.data.augment import decode_jpegs, full_frame, squash_bicubic

    jpegs = [_jpeg_frame(24, 48, s) for s in range(3)]
    out = np.zeros((3, 16, 16, 3), dtype=np.uint8)
    decode_jpegs(jpegs, full_frame(24, 48), 16, out, "k", interp="bicubic")
    decoded = torch.stack([torch.from_numpy(np.array(Image.open(io.BytesIO(j)))) for j in jpegs])
    expect = squash_bicubic(decoded, 16)
    # libjpeg-turbo vs PIL's libjpeg may differ by a level or so on some pixels.
    assert (torch.from_numpy(out).int() - expect.int()).abs().float().mean() < 1.0


def test_eval_vindlu_preprocess_has_no_temperature(tmp_path):
    from t2v2t.models import build_model, build_tokenizer
    from tests.test_evaluate import NUM_VIDEOS

    torch.manual_seed(0)
    model = build_model("tiny", "random", overrides={"image_size": SIZE}).eval()
    tiny = (model, build_tokenizer("tiny"))
    directory = write_eval_shards(tmp_path)
    proj = _eval(tiny, directory, rerank=False, k=NUM_VIDEOS)
    vind = _eval(tiny, directory, rerank=False, k=NUM_VIDEOS, preprocess="vindlu")
    assert proj["preprocess"] == "project" and vind["preprocess"] == "vindlu"
    # Stored frames are already SIZE x SIZE and captions already clean: the same inputs, so
    # VindLU's stage 1 is the project's times the temperature (raw cosines, in [-1, 1]).
    temp = float(model.temperature().detach())
    assert abs(temp - 1.0) > 0.5  # the two differ
    s1p, s1v = proj.scores["stage1"], vind.scores["stage1"]
    assert np.abs(s1v - s1p * temp).max() < 1e-5
    assert np.abs(s1v).max() <= 1.0 + 1e-5
    f = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    v = torch.nn.functional.normalize(torch.randn(2, 4, 8), dim=-1)
    per_frame = torch.einsum("td,vfd->tvf", f, v).mean(-1)
    assert torch.allclose(raw_similarity(f, v), per_frame, atol=1e-6)


def test_default_preprocess_follows_the_source():
    assert default_preprocess("vindlu") == "vindlu"
    assert default_preprocess("project") == "project"
    assert default_preprocess("export", {"preprocess": "vindlu"}) == "vindlu"
    assert default_preprocess("export", {"preprocess": "project"}) == "project"


def _no_unpickling(monkeypatch):
    def refuse(*_a, **_k):
        raise AssertionError("an exported folder must load without unpickling")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


def test_export_project_checkpoint_roundtrip(tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    from t2v2t.models import build_model
    from t2v2t.models.loading import load_any_checkpoint, tokenizer_for

    torch.manual_seed(1)
    model = build_model("tiny", "random", overrides={"image_size": SIZE}).eval()
    ckpt = tmp_path / "best.pt"
    _save_checkpoint(model, ckpt)
    path = Path(__file__).resolve().parents[1] / "scripts" / "export.py"
    spec = importlib.util.spec_from_file_location("_export", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "exported"
    assert mod.main([str(ckpt), str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer_config.json"} <= names, names
    assert names & {"vocab.txt", "tokenizer.json"}, names
    with monkeypatch.context() as m:
        _no_unpickling(m)
        loaded = load_any_checkpoint(out, say=lambda _m: None)
        tok = tokenizer_for(loaded)
    assert loaded.source == "export" and loaded.extra["preprocess"] == "project"
    ref = model.state_dict()
    got = loaded.model.state_dict()
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert (
        tok("a red square")["input_ids"]
        == tokenizer_for(load_any_checkpoint(ckpt, say=lambda _m: None))("a red square")[
            "input_ids"
        ]
    )
    # A folder without the files: one line naming what is missing.
    from t2v2t.models.loading import CheckpointError

    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="without config.json"):
        load_any_checkpoint(tmp_path / "empty")


def _vindlu_middle(num_frames, vlen):
    """VindLU's test-time rule, written from its description: ``min(T, vlen)`` intervals from
    ``linspace(0, vlen)``, each ``[a, b-1]``, the middle ``(a + b - 1) // 2``, padded with the
    last pick."""
    n = min(num_frames, vlen)
    edges = np.linspace(0, vlen, n + 1).astype(int)
    picks = [(int(edges[i]) + int(edges[i + 1]) - 1) // 2 for i in range(n)]
    return picks + [picks[-1]] * (num_frames - n)


@pytest.mark.parametrize(("num_frames", "vlen"), [(12, 300), (12, 37), (4, 10), (8, 5), (3, 3)])
def test_vindlu_frame_rule(num_frames, vlen):
    from t2v2t.data.frames import frame_indices

    got = [s[0] for s in frame_indices(num_frames, vlen, "vindlu_middle")]
    assert got == _vindlu_middle(num_frames, vlen)
    ours = [s[0] for s in frame_indices(num_frames, vlen, "middle")]
    assert all(o - g in (0, 1) for g, o in zip(got, ours, strict=True))
    if (num_frames, vlen) == (4, 10):  # segments [0,2) [2,5) [5,7) [7,10): even sums differ
        assert (got, ours) == ([0, 3, 5, 8], [1, 3, 6, 8])


def test_build_shards_with_vindlu_frame_rule(tmp_path):
    import sys
    from pathlib import Path

    from preprocessing.job import build_shards
    from preprocessing.records import VideoRecord
    from preprocessing.spec import ShardSpec
    from t2v2t.data.schema import decode_sample
    from t2v2t.data.shards import iter_samples, read_manifest

    sys.path.insert(0, str(Path(__file__).parent))
    from helpers_video import make_video

    video = make_video(tmp_path / "v.mp4", frames=24)
    rec = VideoRecord("v", video, "v.mp4", ["A clip!"])
    out = tmp_path / "shards"
    spec = ShardSpec("msrvtt", "test", 4, "vindlu_middle", 1, short_side=32, samples_per_shard=4)
    build_shards([rec], out, spec, workers=0, progress=False)
    manifest = read_manifest(out)
    assert manifest["mode"] == "vindlu_middle" and manifest["candidates"] == 1
    meta, _ = decode_sample(next(iter_samples(out / manifest["shards"][0]["name"])))
    assert [s[0] for s in meta.frame_indices] == _vindlu_middle(4, 24) == [2, 8, 14, 20]
