"""Bad values and faults through the user's own commands: one ``error:`` line, exit 2, no
traceback; paths confined to the data folder; nothing invented or written into a user's folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from preprocessing.synthetic import generate
from preprocessing.verify import verify_dir
from t2v2t import commands
from t2v2t.data.shards import read_manifest

sys.path.insert(0, str(Path(__file__).parent))
from train_shards import make_train_shards, tiny_overrides  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
ENV.pop("T2V2T_DEBUG", None)


def run(cmd: list[str], cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, env={**ENV, **env}, timeout=300
    )


def one_error(proc: subprocess.CompletedProcess) -> str:
    """The single ``error:`` line of a refused command (asserting exit 2, no traceback)."""
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text, text
    lines = [s for s in proc.stderr.splitlines() if s.startswith("error:")]
    assert len(lines) == 1, text
    return lines[0]


def make(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return run(["make", "-s", "-o", ".venv/.installed", "-C", str(ROOT), *args], cwd=cwd)


def shards_cmd(*args: str) -> list[str]:
    return [PY, str(ROOT / "scripts/build_shards.py"), "--workers", "0", "--quiet", *args]


@pytest.fixture(scope="module")
def webvid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("webvid")
    generate("webvid", root, size=6, video_size=(48, 32), duration=1.0, workers=1)
    return root


@pytest.fixture(scope="module")
def toy_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_train_shards(tmp_path_factory.mktemp("toy"), num_samples=16, per_shard=8)


# -- bad values: make targets and scripts, each one line ---------------------------------------

MAKE_CASES = {
    "frames-zero": (["shards", "DATASET=webvid", "FRAMES=0"], "FRAMES=0"),
    "frames-negative": (["shards", "DATASET=webvid", "FRAMES=-3"], "FRAMES=-3"),
    "frames-abc": (["shards", "DATASET=webvid", "FRAMES=abc"], "abc"),
    "workers-negative": (["shards", "DATASET=webvid", "WORKERS=-1"], "WORKERS=-1"),
    "shard-bytes-abc": (["shards", "DATASET=webvid", "SHARD_BYTES=abc"], "SHARD_BYTES=abc"),
    "shard-size-zero": (["shards", "DATASET=webvid", "SHARD_SIZE=0"], "SHARD_SIZE=0"),
    "dataset-nope": (["shards", "DATASET=nope"], "nope"),
    "split-folder": (["shards", "DATASET=folder", "SPLIT=bogus"], "SPLIT=bogus"),
    "split-webvid": (["shards", "DATASET=webvid", "SPLIT=bogus"], "SPLIT=bogus"),
    "split-msrvtt": (["shards", "DATASET=msrvtt", "SPLIT=bogus"], "SPLIT=bogus"),
    "preset-small": (["pretrain", "PRESET=small"], "small"),
    "lr-abc": (["pretrain", "PRESET=tiny", "ARGS=optim.lr=abc"], "optim.lr"),
    "image-size-zero": (["pretrain", "PRESET=tiny", "ARGS=model.image_size=0"], "image_size"),
    "image-size-odd": (["pretrain", "PRESET=tiny", "ARGS=model.image_size=50"], "patch size"),
    "num-workers": (["pretrain", "PRESET=tiny", "ARGS=data.num_workers=-1"], "num_workers"),
}


@pytest.mark.parametrize("case", sorted(MAKE_CASES))
def test_bad_value_is_one_line(case: str, tmp_path: Path) -> None:
    args, named = MAKE_CASES[case]
    line = one_error(make(*args, f"DATA={tmp_path / 'data'}", f"RUN={tmp_path / 'run'}"))
    assert named in line
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()


SCRIPTS = sorted(p.name for p in (ROOT / "scripts").glob("*.py") if p.name != "__init__.py")


def test_every_expected_error_is_reported_by_its_base() -> None:
    from preprocessing.adapters import AnnotationError
    from t2v2t.data.integrity import ShardError
    from t2v2t.errors import CheckpointError, ExpectedError, UsageError, describe
    from t2v2t.models import WeightsMismatchError, WeightsUnavailableError
    from t2v2t.typed_yaml import ConfigError

    kinds = (AnnotationError, ShardError, CheckpointError, UsageError, ConfigError)
    for kind in (*kinds, WeightsMismatchError, WeightsUnavailableError):
        assert issubclass(kind, ExpectedError), kind
        assert describe(kind("x.yaml: bad\nmore")) == "x.yaml: bad", kind
    # The types keep their builtin bases, so existing ``except ValueError`` still catch them.
    assert issubclass(ConfigError, ValueError) and issubclass(ShardError, RuntimeError)
    assert describe(ValueError("a bug")) is None


def _called_name(func: object) -> str:
    """``ArgumentParser`` for ``ArgumentParser(...)`` and ``argparse.ArgumentParser(...)``."""
    return getattr(func, "attr", "") or getattr(func, "id", "")


def _shim_target(tree) -> str | None:
    """The package command a ``scripts/`` shim runs (``from t2v2t.<cmd> import main``), or None."""
    import ast

    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and any(a.name == "main" for a in node.names):
            return node.module
    return None


def test_every_script_has_an_example_and_the_error_wrapper() -> None:
    import ast

    shims = 0
    for name in SCRIPTS:
        tree = ast.parse((ROOT / "scripts" / name).read_text())
        assert "cli(main)" in ast.unparse(tree), f"{name} does not run main through errors.cli"
        target = _shim_target(tree)
        if target is not None:  # a user command's old name: the example is the command's
            shims += 1
            assert target.startswith("t2v2t."), name
            tree = ast.parse((ROOT / (target.replace(".", "/") + ".py")).read_text())
        epilogs = [
            kw.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and _called_name(node.func) == "ArgumentParser"
            for kw in node.keywords
            if kw.arg == "epilog"
        ]
        consts = {
            t.id: n.value
            for n in tree.body
            if isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        text = " ".join(ast.unparse(consts.get(getattr(e, "id", None), e)) for e in epilogs)
        assert "example:" in text, name
        assert any(f in text for f in ("python scripts/", "make ", "t2v2t ")), name
        # Argument errors read as one line through errors.ArgumentParser (nothing is patched).
        assert "argparse.ArgumentParser(" not in ast.unparse(tree), name
    # Every user command of the installed `t2v2t` keeps its old script name as a shim.
    assert shims == len(commands.COMMANDS), shims


@pytest.mark.parametrize("script", ["build_shards.py", "verify_shards.py", "plot_run.py"])
def test_help_ends_with_an_example(script: str) -> None:
    proc = run([PY, str(ROOT / "scripts" / script), "--help"])
    assert proc.returncode == 0, proc.stderr
    tail = " ".join(proc.stdout.split()[-30:])
    assert "example:" in tail and ("python scripts/" in tail or "make " in tail), tail


# -- never invent data ---------------------------------------------------------------------------


def test_unrelated_folder_is_refused_and_untouched(tmp_path: Path) -> None:
    data = tmp_path / "mine"
    (data / "sub").mkdir(parents=True)
    (data / "notes.txt").write_text("a lab's own files\n")
    (data / "sub" / "clip.mp4").write_bytes(b"not ours")
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    proc = make("shards", "DATASET=webvid", f"DATA={data}", f"OUT={tmp_path / 'out'}")
    line = one_error(proc)
    for name in ("results_2M_train.csv", "results_10M_train.csv", "results_*_train.csv"):
        assert name in line
    assert "SYNTHETIC=1" in line
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before
    # --synthetic does not write among them either
    line = one_error(run(shards_cmd("--dataset", "webvid", "--data", str(data), "--synthetic")))
    assert "holds other files" in line
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before


def test_missing_data_folder_is_not_generated(tmp_path: Path) -> None:
    line = one_error(run(shards_cmd("--dataset", "folder", "--data", str(tmp_path / "typo"))))
    assert "typo" in line and "does not exist" in line
    assert not (tmp_path / "typo").exists()


def test_webvid_10m_csv_and_synthetic_flag(webvid: Path, tmp_path: Path) -> None:
    data = tmp_path / "real"
    data.mkdir()
    (data / "videos").symlink_to(webvid / "videos")  # a lab's linked video store
    (data / "results_10M_train.csv").write_text((webvid / "results_2M_train.csv").read_text())
    proc = run(shards_cmd("--dataset", "webvid", "--data", str(data), "--out", str(tmp_path / "s")))
    assert proc.returncode == 0, proc.stderr
    m = read_manifest(tmp_path / "s/webvid/train_4f")
    assert m["num_samples"] == 6 and m["synthetic"] is False
    assert m["warnings"] == {"fps_from_packets": 0}
    out = tmp_path / "syn"
    proc = run(shards_cmd("--dataset", "webvid", "--data", str(webvid), "--out", str(out)))
    assert proc.returncode == 0, proc.stderr
    assert read_manifest(out / "webvid/train_4f")["synthetic"] is True


# -- confinement ---------------------------------------------------------------------------------


def test_paths_outside_the_data_folder_are_refused(webvid: Path, tmp_path: Path) -> None:
    data = tmp_path / "lab" / "data"
    data.mkdir(parents=True)
    clip = sorted((webvid / "videos").rglob("*.mp4"))[0]
    outside = tmp_path / "lab" / "secret.mp4"
    outside.write_bytes(clip.read_bytes())
    (data / "ok.mp4").write_bytes(clip.read_bytes())
    (data / "store").symlink_to(webvid / "videos")  # a link inside the root may point anywhere
    linked = sorted((data / "store").rglob("*.mp4"))[0].relative_to(data)
    rows = ["path,caption", "ok.mp4,a clip", f"{linked},a linked clip"]
    rows += ["../secret.mp4,escape", f"{outside},absolute", "sub/../../secret.mp4,sneaky"]
    (data / "captions.csv").write_text("\n".join(rows) + "\n")
    proc = run(shards_cmd("--dataset", "folder", "--data", str(data), "--out", str(tmp_path / "s")))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "s/folder/train_12f"
    fails = [json.loads(s) for s in (out / "failures.jsonl").read_text().splitlines()]
    assert sorted(f["reason"] for f in fails) == ["outside the data folder"] * 3
    assert read_manifest(out)["num_samples"] == 2
    assert verify_dir(out) == []


# -- annotation files the user wrote -------------------------------------------------------------


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"path,caption\nok.mp4,caf\xe9\n", "captions.csv: not UTF-8"),
        (b"path,text\nok.mp4,a clip\n", "captions.csv:1: header"),
        (
            b"path,caption\nok.mp4,a clip\nbad.mp4\n",
            "captions.csv:3: row has 1 fields, header has 2",
        ),
    ],
    ids=["non-utf8", "missing-column", "short-row"],
)
def test_bad_captions_csv(content: bytes, expected: str, tmp_path: Path) -> None:
    (tmp_path / "captions.csv").write_bytes(content)
    proc = run(shards_cmd("--dataset", "folder", "--data", str(tmp_path), "--out", str(tmp_path)))
    assert expected in one_error(proc)


# -- the output folder ---------------------------------------------------------------------------


def test_read_only_output_folder(webvid: Path, tmp_path: Path) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    # As root (CI containers) a read-only bind mount gives the real EROFS; otherwise the folder's
    # mode gives EACCES (root ignores modes).
    mounted = os.geteuid() == 0 and (
        subprocess.run(["mount", "--bind", str(out), str(out)]).returncode == 0
    )
    try:
        if mounted:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(out)], check=True)
        else:
            out.chmod(0o555)
        proc = run(shards_cmd("--dataset", "webvid", "--data", str(webvid), "--out", str(out)))
        line = one_error(proc)
        assert str(out) in line
        assert ("Read-only file system" if mounted else "Permission denied") in line
    finally:
        if mounted:
            subprocess.run(["umount", str(out)], check=True)


def test_full_disk_names_the_path(webvid: Path, tmp_path: Path) -> None:
    # RLIMIT_FSIZE turns "file too large" into a real EFBIG from write(); a tmpfs of a few KB
    # gives the real ENOSPC where mounting is allowed (root), which is tried first.
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)]).returncode
        == 0
    )
    try:
        proc = run(shards_cmd("--dataset", "webvid", "--data", str(webvid), "--out", str(mnt)))
        if not mounted:
            pytest.skip("no tmpfs mount here (needs root)")
        line = one_error(proc)
        assert "No space left on device" in line and str(mnt) in line
    finally:
        if mounted:
            subprocess.run(["umount", str(mnt)], check=True)


# -- checkpoints ---------------------------------------------------------------------------------


def _bad_checkpoints(tmp_path: Path) -> dict[str, Path]:
    import pickle
    import zipfile

    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "x": Evil()}, evil)
    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.zeros(3)}}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert zipfile.is_zipfile(evil) and pickle  # real torch files, not stand-ins
    return {"evil": evil, "truncated": truncated}


@pytest.mark.parametrize("how, which", [("finetune", "evil"), ("resume", "truncated")])
def test_bad_checkpoint_is_one_line(how: str, which: str, toy_shards: Path, tmp_path: Path) -> None:
    ckpt = _bad_checkpoints(tmp_path)[which]
    over = tiny_overrides(toy_shards, "train.max_steps=1", source="msrvtt")
    over.append("train.eval_every_epoch=false")
    cmd = [PY, str(ROOT / "scripts/train.py"), "--task", "finetune-msrvtt", "--preset", "tiny"]
    cmd += ["--run", str(tmp_path / "run")]
    env = {}
    if how == "finetune":
        cmd += ["--ckpt", str(ckpt)]
    else:
        cmd += ["--resume"]
        env["RESUME"] = str(ckpt)
    line = one_error(run([*cmd, *over], **env))
    assert str(ckpt) in line and "cannot load checkpoint" in line, line
    assert not (tmp_path / "pwned").exists()


def test_every_bad_checkpoint_is_refused_by_both_loaders(tmp_path: Path) -> None:
    from t2v2t.errors import CheckpointError, describe
    from t2v2t.training.checkpoint import load_checkpoint

    for ckpt in _bad_checkpoints(tmp_path).values():
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(ckpt)
        assert str(ckpt) in describe(info.value)
    assert not (tmp_path / "pwned").exists()


# -- Dask: a scheduler that is not there ---------------------------------------------------------


def test_unreachable_scheduler(webvid: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = shards_cmd("--dataset", "webvid", "--data", str(webvid), "--out", str(tmp_path))
    cmd += ["--scheduler", f"tcp://127.0.0.1:{port}"]
    line = one_error(run(cmd, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="2s"))
    assert f"SCHEDULER=tcp://127.0.0.1:{port}" in line


# -- concurrent and remote builds ----------------------------------------------------------------


def test_two_concurrent_builds_one_folder(webvid: Path, tmp_path: Path) -> None:
    cmd = shards_cmd("--dataset", "webvid", "--data", str(webvid), "--out", str(tmp_path))
    cmd += ["--samples-per-shard", "1", "--short-side", "32"]
    out = tmp_path / "webvid/train_4f"
    first = subprocess.Popen(
        cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 60
    while time.time() < deadline and not (
        (out / ".lock").is_file() and (out / ".lock").read_text().startswith("pid")
    ):
        time.sleep(0.01)
    # Hold the first build still while it holds the lock (a real SIGSTOP), so the second one
    # meets the lock however fast the first would have finished.
    first.send_signal(signal.SIGSTOP)
    try:
        second = run(cmd)
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    line = one_error(second)
    assert "another build is writing" in line and f"pid {first.pid}" in line
    assert verify_dir(out) == [] and read_manifest(out)["num_samples"] == 6
    assert (out / ".lock").read_text() == ""  # a finished build names no holder


def test_external_worker_in_another_folder(webvid: Path, tmp_path: Path) -> None:
    import socket

    dask = str(Path(PY).parent / "dask")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr = f"tcp://127.0.0.1:{port}"
    for proj in ("ref", "proj"):  # relative DATA= and OUT=, as a user types them
        (tmp_path / proj / "data").mkdir(parents=True)
        (tmp_path / proj / "data" / "webvid").symlink_to(webvid)
    cmd = shards_cmd("--dataset", "webvid", "--data", "data/webvid", "--out", "shards")
    cmd += ["--samples-per-shard", "2", "--short-side", "32"]
    assert run(cmd, cwd=tmp_path / "ref").returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            cwd=elsewhere,
            env=ENV,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        procs.append(
            subprocess.Popen(
                [dask, "worker", addr, "--nthreads", "1", "--nworkers", "1", "--no-dashboard"],
                cwd=elsewhere,
                env=ENV,
                stderr=subprocess.DEVNULL,
            )
        )
        proc = run([*cmd, "--scheduler", addr], cwd=tmp_path / "proj")
        assert proc.returncode == 0, proc.stderr
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
    ref = read_manifest(tmp_path / "ref/shards/webvid/train_4f")
    got = read_manifest(tmp_path / "proj/shards/webvid/train_4f")
    assert got["shards"] == ref["shards"] and got["num_samples"] == 6
    assert not list(elsewhere.rglob("*.tar.zst"))  # nothing written relative to the worker


def test_zero_timescale_video_is_a_recorded_failure(webvid: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    clip = bytearray(sorted((webvid / "videos").rglob("*.mp4"))[0].read_bytes())
    (data / "ok.mp4").write_bytes(clip)
    at = clip.find(b"mdhd")  # version-0 media header: timescale after version/flags + 2 dates
    assert clip[at + 4] == 0
    clip[at + 16 : at + 20] = (0).to_bytes(4, "big")
    (data / "zero.mp4").write_bytes(clip)
    (data / "captions.csv").write_text("path,caption\nok.mp4,fine\nzero.mp4,no timescale\n")
    proc = run(shards_cmd("--dataset", "folder", "--data", str(data), "--out", str(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "folder/train_12f"
    fails = [json.loads(s) for s in (out / "failures.jsonl").read_text().splitlines()]
    assert [f["key"] for f in fails] == ["zero"] and "frame rate" in fails[0]["reason"]
    assert read_manifest(out)["num_samples"] == 1


def test_lost_scheduler_mid_build(webvid: Path, tmp_path: Path) -> None:
    import signal
    import socket

    dask = str(Path(PY).parent / "dask")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr = f"tcp://127.0.0.1:{port}"
    sched = subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        cwd=tmp_path,
        env=ENV,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [dask, "worker", addr, "--nthreads", "1", "--nworkers", "1", "--no-dashboard"],
        cwd=tmp_path,
        env=ENV,
        stderr=subprocess.DEVNULL,
    )
    try:
        cmd = shards_cmd("--dataset", "webvid", "--data", str(webvid), "--out", str(tmp_path))
        cmd += ["--samples-per-shard", "1", "--short-side", "32", "--scheduler", addr]
        env = {**ENV, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
        build = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        done = tmp_path / "webvid/train_4f/.done"
        deadline = time.time() + 90
        while time.time() < deadline and not list(done.glob("*.json")):
            time.sleep(0.01)
        os.kill(sched.pid, signal.SIGKILL)
        out, err = build.communicate(timeout=180)
    finally:
        for p in (worker, sched):
            p.kill()
            p.wait(timeout=30)
    proc = subprocess.CompletedProcess(cmd, build.returncode, out, err)
    line = one_error(proc)
    assert "lost the Dask scheduler" in line and addr in line
    assert not (tmp_path / "webvid/train_4f/manifest.json").exists()


def test_dataloader_worker_error_is_one_line() -> None:
    import torch

    from t2v2t.data.shards import ShardError
    from t2v2t.errors import describe

    class Bad(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> int:
            raise ShardError("shards/x/a.tar.zst: sha256 differs from the manifest; rebuild it")

    loader = torch.utils.data.DataLoader(Bad(), num_workers=1)
    with pytest.raises(ShardError) as info:
        next(iter(loader))
    assert "Original Traceback" in str(info.value)  # torch's 30-line re-raise ...
    assert describe(info.value) == (  # ... reads as the original's one line
        "shards/x/a.tar.zst: sha256 differs from the manifest; rebuild it"
    )


def test_synthetic_shards_warn_once(toy_shards: Path, tmp_path: Path, capsys) -> None:
    from t2v2t.data.shards import warn_if_synthetic, write_manifest

    syn = tmp_path / "syn"
    syn.mkdir()
    write_manifest(syn, {**read_manifest(toy_shards), "synthetic": True})
    assert warn_if_synthetic([toy_shards], "training") is False
    assert capsys.readouterr().err == ""
    assert warn_if_synthetic([toy_shards, syn, syn], "training") is True
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: training reads synthetic shards")


def test_an_error_under_a_progress_bar_starts_a_line_of_its_own(
    capsys: pytest.CaptureFixture,
) -> None:
    """A bar redraws its line with a carriage return and no newline; the error line must not
    be glued to it (a reader of the log, or a test, looks for lines that start with error:)."""
    from tqdm import tqdm

    from t2v2t.errors import UsageError, cli

    bar = tqdm(total=2, desc="epoch 1/1")
    bar.update(1)

    def main() -> None:
        raise UsageError("s3://bucket/shard.tar.zst: read failed 5 times")

    assert cli(main) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == ["error: s3://bucket/shard.tar.zst: read failed 5 times"], repr(err)
