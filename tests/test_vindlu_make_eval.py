"""`make eval-msrvtt PRESET=base CKPT=<VindLU-format .pth>` on synthetic MSR-VTT test shards
built with VindLU's frame rule: all three fusions written, VindLU's preprocessing chosen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from preprocessing.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
sys.path.insert(0, str(Path(__file__).parent))
from vindlu_fixture import write_vindlu_checkpoint  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
ENV.pop("T2V2T_DEBUG", None)


@pytest.fixture(scope="module")
def msrvtt_shards(tmp_path_factory):
    data = tmp_path_factory.mktemp("msrvtt_data")
    generate("msrvtt", data, size=2, test_size=8, video_size=(64, 48), duration=1.5, workers=1)
    out = tmp_path_factory.mktemp("shards")
    cmd = [PY, str(ROOT / "scripts/build_shards.py"), "--dataset", "msrvtt", "--data", str(data),
           "--out", str(out), "--split", "test", "--frames", "12", "--frame-rule", "vindlu",
           "--workers", "0", "--quiet", "--short-side", "64"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((out / "msrvtt" / "test_12f" / "manifest.json").read_text())
    assert manifest["mode"] == "vindlu_middle" and manifest["num_samples"] == 8
    return out


def _make_eval(ckpt: Path, shards: Path, *opts: str) -> subprocess.CompletedProcess:
    args = " ".join([f"--shards {shards}", "eval.k=4", "eval.batch_size=4", "eval.device=cpu",
                     *opts])  # fmt: skip
    cmd = ["make", "-s", "-o", ".venv/.installed", "-C", str(ROOT), "eval-msrvtt", "PRESET=base",
           f"CKPT={ckpt}", f"ARGS={args}"]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=3000)


def _check(proc: subprocess.CompletedProcess, ckpt: Path) -> dict:
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert "eval.preprocess=vindlu" in text and "vindlu model" in text
    result = json.loads((ckpt.parent / "eval" / "msrvtt_test.json").read_text())
    assert result["preprocess"] == "vindlu" and result["num_videos"] == 8
    assert set(result["results"]) == {"none", "naive", "t2v2t"}
    for fusion in ("none", "naive", "t2v2t"):
        r1 = result["results"][fusion]["t2v"]["R1"]
        assert 0.0 <= r1 <= 100.0
    assert (ckpt.parent / "eval" / "msrvtt_test_scores.npz").is_file()
    return result


def test_make_eval_small_vindlu_checkpoint(msrvtt_shards, tmp_path):
    ckpt = tmp_path / "vindlu_small.pth"
    write_vindlu_checkpoint(ckpt, layout="finetuned", size="small", num_frames=4, seed=1)
    _check(_make_eval(ckpt, msrvtt_shards, "eval.num_frames=4"), ckpt)


@pytest.mark.slow
def test_make_eval_base_vindlu_checkpoint(msrvtt_shards, tmp_path):
    ckpt = tmp_path / "vindlu_base.pth"
    write_vindlu_checkpoint(ckpt, layout="finetuned", size="base", num_frames=12, seed=2)
    result = _check(_make_eval(ckpt, msrvtt_shards), ckpt)
    assert result["num_frames"] == 12
