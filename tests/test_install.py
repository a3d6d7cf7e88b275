"""The installed command (README.md, "Commands"): the wheel installed into a fresh venv outside
the checkout runs ``t2v2t shards`` + ``t2v2t verify-shards`` from an empty folder; every
command's ``--help`` shows an example; the Makefile runs the package's modules (``-m``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from preprocessing.tools import find_tool
from t2v2t import commands

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list, cwd: Path, env: dict | None = None, timeout: int = 120):
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _build_wheel(tmp: Path) -> Path:
    """The wheel built from a copy of what packaging reads (nothing is written into the checkout)."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for pkg in ("t2v2t", "preprocessing"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip"]
    proc = _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "wheel",
                 src], cwd=tmp)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (tmp / "wheel").glob("t2v2t-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    """A venv holding only the wheel; the dependencies come from this environment through a
    ``.pth`` line (a plain path: the .pth files in that folder, the editable install's finder
    among them, are not run, so the checkout stays invisible)."""
    venv = tmp / "venv"
    proc = _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    py = venv / "bin" / "python"
    proc = _run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps",
                 "--no-index", wheel], cwd=tmp)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    site = Path(
        _run(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp
        ).stdout.strip()
    )
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "_project_env.pth").write_text("".join(f"{p}\n" for p in ours))
    return venv


def test_wheel_installs_a_t2v2t_that_builds_and_verifies_shards(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    venv = _fresh_venv(tmp_path, _build_wheel(tmp_path))
    work = tmp_path / "elsewhere"
    work.mkdir()
    # An activated venv: its bin first; ffmpeg from this environment (make setup links it).
    path = f"{venv / 'bin'}:{Path(find_tool('ffmpeg')).parent}:/usr/bin:/bin"
    env = {"PATH": path, "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}  # no PYTHONPATH
    assert shutil.which("t2v2t", path=path) == str(venv / "bin" / "t2v2t")

    where = _run([venv / "bin/python", "-c", "import t2v2t, preprocessing; "
                  "print(t2v2t.__file__); print(preprocessing.__file__)"], work, env)  # fmt: skip
    assert where.returncode == 0, where.stderr
    for line in where.stdout.split():
        assert Path(line).is_relative_to(venv) and not Path(line).is_relative_to(ROOT), line

    build = ["t2v2t", "shards", "--dataset", "msrvtt", "--split", "test", "--synthetic",
             "--synthetic-size", "6", "--data", "corpus", "--out", "out", "--short-side", "32",
             "--workers", "1", "--quiet"]  # fmt: skip
    proc = _run(build, work, env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[shards] out/msrvtt/test_12f: 4 samples in 1 shards" in proc.stdout, proc.stdout
    proc = _run(["t2v2t", "verify-shards", "out/msrvtt/test_12f", "--quiet"], work, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("OK out/msrvtt/test_12f: 1 shards, 4 samples"), proc.stdout
    # A damaged shard: the installed command says so and exits 1.
    shard = next((work / "out/msrvtt/test_12f").glob("*.tar.zst"))
    shard.write_bytes(shard.read_bytes()[:-10])
    proc = _run(["t2v2t", "verify-shards", "out/msrvtt/test_12f", "--quiet"], work, env)
    assert proc.returncode == 1 and proc.stdout.startswith("FAILED"), proc.stdout
    # The run wrote only into the folder it was started in (and the venv).
    assert sorted(p.name for p in work.iterdir()) == ["corpus", "out"]
    print(f"wheel build + venv + shards + verify: {time.perf_counter() - t0:.1f} s")


@pytest.mark.parametrize("name", sorted(commands.COMMANDS))
def test_every_command_has_help_with_an_example(
    name: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["t2v2t"])  # the dispatcher renames argv[0]
    with pytest.raises(SystemExit) as exit_:
        commands.main([name, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: t2v2t {name} ") and "example:" in out, out[-500:]
    module = commands.COMMANDS[name][0]
    assert (ROOT / (module.replace(".", "/") + ".py")).is_file()


def test_dispatcher_lists_commands_and_refuses_unknown_ones(capsys: pytest.CaptureFixture) -> None:
    assert commands.main(["--help"]) == 0
    listing = capsys.readouterr().out
    assert all(f"\n  {name} " in listing for name in commands.COMMANDS)
    assert commands.main(["tarin"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown command 'tarin' (t2v2t)") and err.count("\n") == 1
    assert commands.main([]) == 2 and "usage: t2v2t" in capsys.readouterr().err


def test_bad_config_is_reported_before_torch_loads() -> None:
    code = (
        "import sys; from t2v2t.commands import main; "
        "rc = main(['train', '--task', 'pretrain', '--preset', 'tiny', 'optim.lr=abc']); "
        "print('torch' in sys.modules); sys.exit(rc)"
    )
    proc = _run([sys.executable, "-c", code], ROOT)
    assert proc.returncode == 2 and proc.stdout.strip() == "False", (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: optim.lr") and proc.stderr.count("\n") == 1


def test_make_targets_run_the_package_modules() -> None:
    def dry(*args: str) -> str:
        proc = _run(["make", "-n", "-s", "-o", ".venv/.installed", "-o", ".venv/.ffmpeg", *args],
                    ROOT)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return " ".join(proc.stdout.split())

    assert "python -m t2v2t.shards --dataset msrvtt" in dry("shards", "DATASET=msrvtt")
    assert "python -m t2v2t.verify_shards x" in dry("verify-shards", "DIR=x")
    assert "python -m t2v2t.train --task pretrain" in dry("pretrain")
    assert "python -m t2v2t.eval --dataset msrvtt" in dry("eval-msrvtt")
    assert "python -m t2v2t.ablation" in dry("ablation")
    # Several processes: torchrun's -m (tests/test_ddp.py trains through it).
    line = dry("pretrain", "GPUS=2")
    assert "-m t2v2t.launch --nnodes 1 --node_rank 0 --nproc_per_node 2" in line
    assert "-m t2v2t.train --task pretrain" in line
