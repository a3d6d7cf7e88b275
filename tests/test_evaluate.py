"""End to end on the real tiny model: eval shards -> evaluate_retrieval -> outputs -> commands."""

from __future__ import annotations

import builtins
import io
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from t2v2t.data.schema import FORMAT, SampleMeta, encode_sample
from t2v2t.data.shards import info_dict, shard_dir, shard_name, write_manifest, write_shard
from t2v2t.retrieval.metrics import retrieval_metrics

NUM_VIDEOS, STORED_FRAMES, SIZE = 9, 12, 32
# Video 3 has two captions: a video with several texts (MSR-VTT train style).
CAPTIONS = {i: [f"a {c} square moving {d}"] for i, (c, d) in enumerate(
    [("red", "left"), ("blue", "right"), ("green", "up"), ("white", "down"), ("black", "left"),
     ("pink", "right"), ("gray", "up"), ("brown", "down"), ("orange", "left")])}  # fmt: skip
CAPTIONS[3] = CAPTIONS[3] + ["a white square that falls"]


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_eval_shards(root, dataset="msrvtt", split="test"):
    """A small eval shard folder in the real format (two shards, middle sampling)."""
    out = shard_dir(root, dataset, split, STORED_FRAMES)
    out.mkdir(parents=True)
    samples = []
    for v in range(NUM_VIDEOS):
        meta = SampleMeta(
            key=f"video{v}", dataset=dataset, split=split, source=f"videos/video{v}.mp4",
            captions=CAPTIONS[v], fps=8.0, vlen=48, duration=6.0,
            frame_indices=[[4 * i + 2] for i in range(STORED_FRAMES)],
            sampling={"mode": "middle", "num_frames": STORED_FRAMES, "candidates": 1, "seed": 0},
            size=[SIZE, SIZE],
        )  # fmt: skip
        samples.append(encode_sample(meta, [_jpeg(v * 100 + f) for f in range(STORED_FRAMES)]))
    infos = [
        write_shard(out / shard_name(dataset, split, 0), samples[:5]),
        write_shard(out / shard_name(dataset, split, 1), samples[5:]),
    ]
    write_manifest(out, {
        "format": FORMAT, "dataset": dataset, "split": split, "num_frames": STORED_FRAMES,
        "mode": "middle", "candidates": 1, "seed": 0, "short_side": SIZE, "jpeg_quality": 90,
        "num_samples": NUM_VIDEOS, "num_failed": 0, "shards": [info_dict(i) for i in infos],
        "created_with": {},
    })  # fmt: skip
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    return root, write_eval_shards(root)


@pytest.fixture(scope="module")
def tiny():
    from t2v2t.models import build_model, build_tokenizer

    torch.manual_seed(0)
    model = build_model("tiny", "random", overrides={"image_size": SIZE})
    return model.eval(), build_tokenizer("tiny")


def flat(results):
    return {
        (f, d, m): v for f, dirs in results.items() for d, ms in dirs.items() for m, v in ms.items()
    }


def _settings(directory, **kw):
    from t2v2t.retrieval.settings import EvalConfig

    opts = dict(
        dataset="msrvtt",
        split="test",
        shards=str(directory),
        k=4,
        num_frames=4,
        batch_size=4,
        pair_batch=7,
        max_text_len=16,
    )
    return EvalConfig(**{**opts, **kw})


def _eval(tiny, directory, **kw):
    from t2v2t.retrieval.evaluate import evaluate_retrieval

    model, tok = tiny
    return evaluate_retrieval(model, tok, _settings(directory, **kw))


def test_shared_pairs_match_two_pass_on_tiny_model(tiny, shards, tmp_path):
    from t2v2t.retrieval.evaluate import load_scores, write_eval_outputs

    _, directory = shards
    shared = _eval(tiny, directory)
    two = _eval(tiny, directory, pairing="two_pass")
    nt = NUM_VIDEOS + 1
    assert (shared["num_texts"], shared["num_videos"]) == (nt, NUM_VIDEOS)
    assert two["pair_evaluations"] == 4 * nt + 4 * NUM_VIDEOS
    assert shared["pair_evaluations"] < two["pair_evaluations"]
    assert shared["pair_evaluations_two_pass"] == two["pair_evaluations"]
    # Shared pairs project each video's cross-attention K/V once; VindLU's passes repeat videos.
    assert shared["share_video_kv"] is True and two["share_video_kv"] is False
    for key in ("t2v_none", "t2v_naive", "t2v_t2v2t"):
        np.testing.assert_allclose(shared.scores[key], two.scores[key], atol=1e-4)
    assert flat(shared["results"]) == pytest.approx(flat(two["results"]))
    assert set(shared["results"]) == {"none", "naive", "t2v2t"}
    assert set(shared["results"]["t2v2t"]["v2t"]) == {"R1", "R5", "R10", "Avg", "MdR", "MnR"}

    # The files: JSON as returned, and a npz from which anyone recomputes the metrics.
    json_path, npz_path = write_eval_outputs(shared, None, tmp_path / "eval")
    assert json_path.name == "msrvtt_test.json" and npz_path.name == "msrvtt_test_scores.npz"
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(shared))
    arrays, gt = load_scores(npz_path)
    assert gt[3] == [3] and gt[4] == [3]  # the second caption of video 3
    assert arrays["t2v_t2v2t"].shape == (nt, NUM_VIDEOS)
    recomputed = retrieval_metrics(arrays["t2v_none"], arrays["t2v_none"].T, gt)["t2v"]
    assert recomputed == pytest.approx(shared["results"]["none"]["t2v"])


def test_stage1_only_and_full_candidates(tiny, shards):
    _, directory = shards
    res = _eval(tiny, directory, rerank=False, k=NUM_VIDEOS + 1)
    assert res["pair_evaluations"] == 0
    # With every video a candidate, `none` is plain dual-encoder ranking of the similarities.
    from t2v2t.retrieval.metrics import t2v_metrics

    gt = [[v] for v in range(NUM_VIDEOS)]
    gt.insert(4, [3])
    assert res["results"]["none"]["t2v"] == pytest.approx(t2v_metrics(res.scores["stage1"], gt))


def _save_checkpoint(model, path):
    torch.save(
        {"model": model.state_dict(), "preset": "tiny", "model_config": model.config.to_dict()},
        path,
    )


def test_eval_and_ablation_commands(tiny, shards, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    def load(name):
        path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"_{name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    evaluate, ablation = load("evaluate"), load("ablation")
    root, _ = shards
    ckpt = tmp_path / "ft" / "best.pt"
    ckpt.parent.mkdir()
    _save_checkpoint(tiny[0], ckpt)
    common = ["--shards", str(root), "--ckpt", str(ckpt)]
    opts = ["eval.k=4", "eval.batch_size=4", "eval.num_frames=4", "eval.max_text_len=16"]
    opts.append("eval.device=cpu")
    assert evaluate.main(["--dataset", "msrvtt", "--preset", "base", *common, *opts]) == 0
    out = capsys.readouterr().out
    assert "R1" in out and "t2v2t" in out and "naive" in out
    assert "bootstrap intervals" in out and "sign-flip" in out and "visual report" in out
    result = json.loads((tmp_path / "ft" / "eval" / "msrvtt_test.json").read_text())
    assert result["checkpoint"] == str(ckpt) and result["k"] == 4
    page = (tmp_path / "ft" / "eval" / "msrvtt_test.html").read_text(encoding="utf-8")
    assert page.count("<section class='query'") >= 1 and "data:image/jpeg;base64," in page

    # Missing inputs: one line, exit status 2, the command that makes them.
    assert evaluate.main(["--dataset", "didemo", *common]) == 2
    assert "make shards DATASET=didemo" in capsys.readouterr().err
    assert evaluate.main(["--dataset", "msrvtt", "--shards", str(root)]) == 2
    assert "make finetune-msrvtt" in capsys.readouterr().err
    assert evaluate.main(["--dataset", "msrvtt", *common, "eval.k=zero"]) == 2

    # The ablation table reuses the JSON just written and reports the datasets it lacks.
    run = tmp_path / "run"
    args = [
        "--preset",
        "tiny",
        "--run",
        str(run),
        "--shards",
        str(root),
        "--ckpt-msrvtt",
        str(ckpt),
    ]
    assert ablation.main([*args, *opts]) == 0
    table = (run / "ablation.md").read_text()
    want = result["results"]["t2v2t"]["t2v"]
    lo, hi = result["statistics"]["t2v"]["intervals"]["t2v2t"]["R1"]
    assert f"| T2V2T | {want['R1']:.1f} [{lo:.1f}, {hi:.1f}] |" in table
    assert lo <= want["R1"] <= hi and "p=" in table and "permutation" in table
    assert "DiDeMo: not evaluated" in table and "naïve T2V2T" in table
    assert "reused" in capsys.readouterr().out
    # Options for one dataset only are checked like the others: one line, exit status 2.
    assert ablation.main([*args, *opts, "--options-msrvtt", "eval.k=zero"]) == 2
    assert "eval.k" in capsys.readouterr().err
    # The commands' post-hoc section: every method x dataset, both protocols, labelled.
    post = result["posthoc"]["protocols"]["batch"]["t2v"]
    assert "Every post-hoc method" in table and "| csls | transductive |" in table
    r1, (lo, hi) = post["dsl"]["metrics"]["R1"], post["dsl"]["interval"]["R1"]
    assert f"| dsl | transductive | {r1:.1f} [{lo:.1f}, {hi:.1f}]" in table
    assert "Holm" in table and "appears 10x" in table
    # ... and over the re-ranked candidate logits, where the bank methods do not apply.
    rer = result["posthoc"]["reranked"]["protocols"]["batch"]["t2v"]
    r1, (lo, hi) = rer["sinkhorn"]["metrics"]["R1"], rer["sinkhorn"]["interval"]["R1"]
    after = table.split("On the re-ranked candidate logits")[1]
    assert f"| sinkhorn | transductive | {r1:.1f} [{lo:.1f}, {hi:.1f}]" in after
    assert "| dbnorm | not applicable | - |" in after
    # The same tables in HTML: ablation.html (every dataset) and the dataset's own page.
    for page in (run / "ablation.html", ckpt.parent / "eval" / "msrvtt_test.html"):
        html = page.read_text(encoding="utf-8")
        assert "Every post-hoc method on the re-ranked candidate logits" in html, page
        assert "<tr data-method='sinkhorn'><th>sinkhorn</th><td>transductive</td>" in html
        assert f"{r1:.1f} <small>[{lo:.1f}, {hi:.1f}]</small>" in html and "Holm" in html


def count_opens(directory, patch) -> Counter:
    """Count every open of a file in ``directory`` (by name), calling the real ``open`` through:
    ``builtins.open`` and ``io.open`` (``Path.read_text``), whoever the reader is."""
    folder, counts, real = Path(directory).resolve(), Counter(), builtins.open

    def counting_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file).resolve().parent == folder:
            counts[Path(file).name] += 1
        return real(file, *args, **kwargs)

    patch(builtins, "open", counting_open)
    patch(io, "open", counting_open)
    return counts


def shard_names(directory) -> list[str]:
    return [
        s["name"] for s in json.loads((Path(directory) / "manifest.json").read_text())["shards"]
    ]


def test_one_evaluation_reads_the_manifest_once_and_each_shard_once(tiny, shards, monkeypatch):
    """Captions come with the frames: one manifest read, one pass over each shard's bytes."""
    _, directory = shards
    names = shard_names(directory)
    counts = count_opens(directory, monkeypatch.setattr)
    res = _eval(tiny, directory)
    monkeypatch.undo()
    assert counts == Counter({"manifest.json": 1, **{name: 1 for name in names}})
    assert (res["num_texts"], res["num_videos"]) == (NUM_VIDEOS + 1, NUM_VIDEOS)
    assert len(res.texts) == NUM_VIDEOS + 1 and res.texts[4] == "a white square that falls"
    assert list(res.scores["video_keys"]) == [f"video{v}" for v in range(NUM_VIDEOS)]


def _dist_eval(rank, world, port, directory, state, out):
    import torch.distributed as dist

    from t2v2t.models import build_model, build_tokenizer
    from t2v2t.retrieval.evaluate import evaluate_retrieval

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = build_model("tiny", "random", overrides={"image_size": SIZE})
        model.load_state_dict(torch.load(state, weights_only=True))
        settings = _settings(directory, batch_size=2, pair_batch=5)
        counts = count_opens(directory, setattr)  # this rank's opens (a spawned process)
        res = evaluate_retrieval(model.eval(), build_tokenizer("tiny"), settings)
        scores = torch.from_numpy(res.scores["t2v_t2v2t"])
        got = {"result": json.dumps(res), "t2v2t": scores, "opens": json.dumps(counts)}
        torch.save(got, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_distributed_evaluation_matches_one_process(tiny, shards, tmp_path):
    """Two gloo ranks: videos and candidate pairs split, gathered; the numbers of one process."""
    import socket

    import torch.multiprocessing as mp

    _, directory = shards
    state = tmp_path / "state.pt"
    torch.save(tiny[0].state_dict(), state)
    single = _eval(tiny, directory, batch_size=2, pair_batch=5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "res")
    mp.spawn(_dist_eval, args=(2, port, directory, str(state), out), nprocs=2, join=True)
    opened = Counter()
    for rank in range(2):
        got = torch.load(f"{out}.{rank}", weights_only=True)
        res = json.loads(got["result"])
        # One manifest read per rank; each shard of the rank's slice opened once.
        opens = json.loads(got["opens"])
        assert opens.pop("manifest.json") == 1 and set(opens.values()) == {1}, opens
        opened.update(opens)
        assert res["world_size"] == 2
        assert res["pair_evaluations"] == single["pair_evaluations"]
        assert flat(res["results"]) == pytest.approx(flat(single["results"]))
        np.testing.assert_allclose(got["t2v2t"].numpy(), single.scores["t2v_t2v2t"], atol=1e-4)
    assert set(opened) == set(shard_names(directory))  # the ranks together read every shard


def test_evaluation_shows_progress_on_stderr(tiny, shards, capsys, monkeypatch):
    """Feature extraction and re-ranking draw bars on stderr (stdout keeps the results)."""
    monkeypatch.setenv("T2V2T_PROGRESS_DELAY", "0")  # shown at once, not after 2 s
    _, directory = shards
    _eval(tiny, directory)
    _eval(tiny, directory, pairing="two_pass")
    out = capsys.readouterr()
    for stage in ("encode videos", "encode texts", "re-rank pairs", "re-rank t2v", "re-rank v2t"):
        assert f"eval: {stage}" in out.err, stage
    assert "100%" in out.err and "eval:" not in out.out
    monkeypatch.setenv("RANK", "1")  # a non-main rank of torchrun stays quiet
    _eval(tiny, directory)
    assert "eval:" not in capsys.readouterr().err


@pytest.mark.parametrize("dataset", ["msrvtt", "didemo", "anet"])
def test_recipe_table_is_the_one_source_for_evaluation(dataset):
    """Evaluation's split, folder, frames and text length come from t2v2t/recipes.py; the
    fine-tuning configs and the shard builder agree with it."""
    from preprocessing.recipes import recipe
    from t2v2t.recipes import eval_recipe, eval_shard_dir, text_len
    from t2v2t.retrieval.run import DATASETS
    from t2v2t.training.config import load_config

    assert DATASETS == ("msrvtt", "didemo", "anet", "folder", "vindlu")
    r = eval_recipe(dataset)
    assert r.mode == "middle" and r in recipe(dataset)  # a full build makes the eval split
    e = load_config(f"finetune-{dataset}").eval
    assert (e.split, e.shards) == (r.split, str(eval_shard_dir(dataset)))
    assert (e.num_frames, e.max_text_len) == (r.num_frames, text_len(dataset))
    assert text_len(dataset) == (64 if dataset in ("didemo", "anet") else 32)


def test_posthoc_with_a_train_caption_bank_cached_and_the_test_split_refused(
    tiny, shards, tmp_path
):
    """eval.posthoc: every post-hoc method on the stage-1 matrix in both protocols; eval.bank=train
    encodes the train shards' captions once (cached by checkpoint + shards), a bank from the
    reported split is one line naming the split (docs/evaluation.md, "Which fusion?")."""
    from t2v2t.retrieval.compare import ScoreInputs, compare
    from t2v2t.retrieval.evaluate import evaluate_retrieval
    from t2v2t.retrieval.posthoc import METHODS
    from t2v2t.typed_yaml import ConfigError

    model, tok = tiny
    root, test_dir = shards
    train_dir = root / "msrvtt" / "train_12f"
    if not train_dir.exists():
        assert write_eval_shards(root, split="train") == train_dir
    cache = tmp_path / "eval"
    s = _settings(test_dir, posthoc=True, bank="train", bank_size=5, bank_videos=3)
    res = evaluate_retrieval(model, tok, s, checkpoint=None, bank_cache=cache)
    post = res["posthoc"]
    assert post["bank"]["shards"] == str(train_dir) and post["bank"]["split"] == "train"
    assert post["bank"]["cached"] is False and post["bank_texts"] == 5
    # Videos: the first shard's 5 (>= 3 asked), against the test texts; dbnorm then runs.
    assert post["bank_videos"] == 5 and "metrics" in post["protocols"]["single"]["t2v"]["dbnorm"]
    assert post["protocols"]["batch"]["v2t"]["is"]["label"] == "inductive"
    assert set(post["protocols"]["batch"]["t2v"]) == set(METHODS)
    single = post["protocols"]["single"]["t2v"]
    assert single["is"]["label"] == "inductive"
    assert single["is"]["metrics"] == post["protocols"]["batch"]["t2v"]["is"]["metrics"]
    assert "skipped" in single["dsl"]
    # The figures are compare() on the stage-1 matrix written to the npz, without a bank: none's.
    gt = [[int(v)] for v in res.scores["gt"][:, 1]]
    plain = compare(ScoreInputs(torch.from_numpy(res.scores["stage1"]).double(), gt))
    assert (
        plain["protocols"]["batch"]["t2v"]["none"]["metrics"]
        == (post["protocols"]["batch"]["t2v"]["none"]["metrics"])
    )
    # Over the re-ranked logits: the fusions' rows are the fusion table's, the bank ones skipped.
    reranked = post["reranked"]["protocols"]["batch"]
    for d in ("t2v", "v2t"):
        for fusion in ("none", "naive", "t2v2t"):
            assert reranked[d][fusion]["metrics"] == res["results"][fusion][d]
        assert "skipped" in reranked[d]["dbnorm"] and "metrics" in reranked[d]["sinkhorn"]
    again = evaluate_retrieval(model, tok, s, checkpoint=None, bank_cache=cache)
    assert again["posthoc"]["bank"]["cached"] is True
    assert again["posthoc"]["protocols"] == post["protocols"]
    assert len(list(cache.glob("bank_*.npz"))) == 2  # captions, videos
    with pytest.raises(ConfigError, match="holds the test split"):
        evaluate_retrieval(model, tok, _settings(test_dir, posthoc=True, bank=str(test_dir)))


def test_tune_fusion_on_train_captions_then_eval_reads_the_params(tiny, shards, tmp_path, capsys):
    """make tune-fusion: held-out train captions against their videos, bank = the other train
    captions; eval.fusion_params= then runs each method with the chosen values."""
    import importlib.util

    from t2v2t.retrieval.evaluate import evaluate_retrieval

    path = Path(__file__).resolve().parents[1] / "scripts" / "tune_fusion.py"
    spec = importlib.util.spec_from_file_location("_tune_fusion", path)
    tune_fusion = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tune_fusion)
    model, tok = tiny
    root, test_dir = shards
    if not (root / "msrvtt" / "train_12f").exists():
        write_eval_shards(root, split="train")
    ckpt = tmp_path / "ft" / "best.pt"
    ckpt.parent.mkdir()
    _save_checkpoint(model, ckpt)
    argv = ["--dataset", "msrvtt", "--ckpt", str(ckpt), "--preset", "tiny", "--shards", str(root)]
    assert tune_fusion.main([*argv, "--queries", "4", "--device", "cpu", "--batch-size", "4"]) == 0
    out = json.loads((ckpt.parent / "fusion_params.json").read_text())
    assert out["tuned_on"]["split"] == "train" and out["tuned_on"]["queries"] == 5  # 1 shard
    assert out["tuned_on"]["bank_texts"] == 4  # videos 5..8's captions; 0..4's are held out
    assert set(out["params"]) >= {"dsl", "is", "qbnorm", "csls", "sinkhorn", "t2v2t_bank"}
    s = _settings(test_dir, posthoc=True, fusion_params=str(ckpt.parent / "fusion_params.json"))
    post = evaluate_retrieval(model, tok, s)["posthoc"]
    for method, values in out["params"].items():
        assert all(post["params"][method][k] == v for k, v in values.items())
