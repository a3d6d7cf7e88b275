"""pip resolves the project for an aarch64 machine (decord has no wheel there; PyAV decodes).

Needs the package registry; slow (about a minute). docs/data.md, "Decoders", says why pip runs
with ``platform.machine()`` reporting aarch64 and why two platform tags are given.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PIP_AS_AARCH64 = """
import platform, sys
platform.machine = lambda: "aarch64"  # markers as pip on an aarch64 machine evaluates them
from pip._internal.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_aarch64_install_resolves(tmp_path: Path) -> None:
    env = {**os.environ, "PIP_CONSTRAINT": os.devnull}  # no x86_64 caps from the machine's pip
    src = tmp_path / "src"  # built from a copy: setuptools leaves build/ in the source folder
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("t2v2t", "preprocessing"):
        shutil.copytree(ROOT / name, src / name, ignore=junk)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + [str(src), "-w", str(tmp_path / "w")],
        check=True,
        env=env,
    )
    wheel = next((tmp_path / "w").glob("t2v2t-*.whl"))
    report = tmp_path / "report.json"
    args = ["install", "--dry-run", "--only-binary=:all:", "--ignore-installed", "-q"]
    args += ["--platform", "manylinux2014_aarch64", "--platform", "manylinux_2_28_aarch64"]
    args += ["--python-version", "3.12", "--target", str(tmp_path / "t")]
    args += ["--report", str(report), str(wheel)]
    proc = subprocess.run(
        [sys.executable, "-c", PIP_AS_AARCH64, *args], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = {i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"]}
    assert {"av", "torch", "numpy", "pillow", "t2v2t"} <= names
    assert "decord" not in names
