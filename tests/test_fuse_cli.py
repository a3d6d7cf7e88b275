"""scripts/fuse.py on score matrices saved by a few lines of numpy (not by this project), and its
one-line refusals of bad npz files (docs/evaluation.md, "Which fusion?")."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from t2v2t.errors import cli
from t2v2t.retrieval.metrics import best_ranks, summarize
from t2v2t.retrieval.posthoc import METHODS, rescore
from t2v2t.retrieval.stats import holm

ROOT = Path(__file__).resolve().parents[1]


def load_fuse():
    spec = importlib.util.spec_from_file_location("_fuse", ROOT / "scripts" / "fuse.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_scores(tmp_path: Path, n: int = 40, gt_kind: str = "int") -> tuple[Path, Path]:
    # What a CLIP4Clip user would save: cosine-like sims, gt indices, a bank from training data.
    rng = np.random.default_rng(0)
    t, noise = rng.normal(size=(n, 8)), rng.normal(size=(n, 8))
    sims = t @ (t + 1.5 * noise).T / 8
    sims[:, :3] += 0.4  # a few hub videos
    gt = np.arange(n) if gt_kind == "int" else np.eye(n, dtype=bool)
    scores = tmp_path / "S.npz"
    np.savez(scores, sims=sims.astype(np.float32), gt=gt)
    bank = tmp_path / "B.npz"
    np.savez(
        bank,
        bank=rng.normal(size=(60, n)) / 3 + np.r_[[0.4] * 3, [0.0] * (n - 3)],
        video_bank=rng.normal(size=(50, n)) / 3,
    )
    return scores, bank


@pytest.mark.parametrize("gt_kind", ["int", "bool"])
def test_fuse_prints_and_writes_every_method(tmp_path, capsys, gt_kind) -> None:
    fuse = load_fuse()
    scores, bank = write_scores(tmp_path, gt_kind=gt_kind)
    out = tmp_path / "out.json"
    argv = ["--scores", str(scores), "--bank", str(bank), "--json", str(out), "--resamples", "200"]
    assert fuse.main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    for m in METHODS:
        assert m in printed
    batch = result["protocols"]["batch"]
    # The figures are the ranks of rescore()'s matrix, computed again here.
    with np.load(scores) as s, np.load(bank) as b:
        sims, bk, vb = s["sims"].astype(np.float64), b["bank"], b["video_bank"]
    gt = [[t] for t in range(len(sims))]
    for m in ("none", "is", "csls", "t2v2t_bank", "dbnorm"):
        want = summarize(best_ranks(rescore(m, sims, bk, vb), gt))
        assert batch["t2v"][m]["metrics"] == want
    for direction in ("t2v", "v2t"):
        rows = batch[direction]
        assert set(rows) == set(METHODS)
        for row in rows.values():
            lo, hi = row["interval"]["R1"]
            assert lo <= row["metrics"]["R1"] <= hi
            assert set(row["metrics"]) == {"R1", "R5", "R10", "Avg", "MdR", "MnR"}
        ps = {m: rows[m]["vs_none"]["R1"]["p"] for m in METHODS if m != "none"}
        assert {m: rows[m]["vs_none"]["R1"]["p_holm"] for m in ps} == holm(ps)
    single = result["protocols"]["single"]["t2v"]
    assert single["dsl"]["label"] == "transductive" and "skipped" in single["dsl"]
    assert single["is"]["metrics"] == batch["t2v"]["is"]["metrics"]  # inductive: the same
    assert result["stress"]["is"]["change"] == 0.0
    assert f"{batch['t2v']['csls']['metrics']['R1']:6.1f}" in printed


def test_holm_against_hand_values() -> None:
    # m = 3: sorted 0.01, 0.02, 0.04 -> 0.03, max(0.03, 0.04) = 0.04, max(0.04, 0.04) = 0.04.
    assert holm({"a": 0.04, "b": 0.01, "c": 0.02}) == {"b": 0.03, "c": 0.04, "a": 0.04}
    assert holm({"a": 0.6, "b": 0.5}) == {"b": 1.0, "a": 1.0}


def _bad(tmp_path: Path, name: str, **arrays) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_bad_npz_is_one_line_naming_the_array(tmp_path, capsys) -> None:
    fuse = load_fuse()
    sims = np.random.default_rng(1).normal(size=(5, 4))
    nan = sims.copy()
    nan[2, 1] = np.nan
    cases = [
        (_bad(tmp_path, "a.npz", gt=np.arange(4)), None, "no array `sims`"),
        (_bad(tmp_path, "b.npz", sims=sims, gt=np.arange(3)), None, "`gt` has shape (3,)"),
        (_bad(tmp_path, "c.npz", sims=nan, gt=np.arange(5) % 4), None, "`sims` (5, 4) holds 1"),
        (
            _bad(tmp_path, "d.npz", sims=sims, gt=np.arange(5) % 4),
            _bad(tmp_path, "e.npz", bank=np.zeros((7, 3))),
            "`bank` has shape (7, 3)",
        ),
        (_bad(tmp_path, "f.npz", sims=sims, gt=np.zeros((5, 4), bool)), None, "no true video"),
    ]
    for scores, bank, words in cases:
        argv = ["--scores", str(scores), "--json", str(tmp_path / "x.json")]
        argv += ["--bank", str(bank)] if bank else []
        assert cli(lambda a=argv: fuse.main(a)) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and words in err and "\n" not in err, err
        assert not (tmp_path / "x.json").exists()


def test_fuse_as_a_command_exits_2_with_one_line(tmp_path) -> None:
    scores = _bad(tmp_path, "s.npz", sims=np.zeros((3, 2)), gt=np.arange(4))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fuse.py"), "--scores", str(scores)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "`gt` has shape (4,)" in proc.stderr
