"""Progress on the long stages: verify-shards draws a bar, the demo prints a heartbeat line
with its stage's latest progress while the stage runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from train_shards import make_train_shards

from t2v2t.tools.demo import SIZES, Demo

ROOT = Path(__file__).resolve().parents[1]


def test_verify_shards_shows_a_bar(tmp_path: Path) -> None:
    folder = make_train_shards(tmp_path, num_samples=16, per_shard=8)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "T2V2T_PROGRESS_DELAY": "0"}
    proc = subprocess.run(
        [sys.executable, "scripts/verify_shards.py", str(folder)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"verify {folder.name}" in proc.stderr and "16/16" in proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 1  # the verdict alone on stdout


def test_demo_stage_prints_a_heartbeat_with_the_childs_progress(tmp_path: Path) -> None:
    lines: list[str] = []
    demo = Demo(tmp_path, SIZES["quick"], log=lines.append)
    demo.heartbeat_s = 0.3
    child = (
        "import sys, time\n"
        "for i in range(1, 7):\n"
        "    sys.stderr.write(f'\\rtrain {i}/6 loss=0.{i} ETA 00:0{6 - i}'); sys.stderr.flush()\n"
        "    time.sleep(0.25)\n"
        "print('done')\n"
    )
    code, out, err = demo._run_with_heartbeat(
        "probe", [sys.executable, "-c", child], time.perf_counter()
    )
    assert code == 0 and out.strip() == "done" and "train 6/6" in err
    beats = [line for line in lines if line.startswith("[demo] probe 0m0")]
    assert len(beats) >= 2, lines
    assert all("loss=" in b and "ETA" in b for b in beats), beats
    assert "\r" not in "".join(beats)
