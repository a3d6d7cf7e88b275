"""Shards built into object storage, against a real S3 server (moto's, on 127.0.0.1).

A build to ``s3://`` gives the local build's bytes; a build killed with SIGKILL while a shard is
on its way up leaves no manifest, and the re-run completes it keeping what was published;
``verify-shards`` checks a URL and names a tampered object; WebVid's CSV and videos are read
from the bucket.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto")

from preprocessing.publish import staging_dir  # noqa: E402
from preprocessing.synthetic import generate  # noqa: E402
from preprocessing.verify import verdict, verify_dir  # noqa: E402
from t2v2t.data.shards import read_manifest  # noqa: E402
from t2v2t.errors import cli  # noqa: E402
from t2v2t.storage import url_fs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
BUILD = [
    "--dataset",
    "webvid",
    "--samples-per-shard",
    "3",
    "--short-side",
    "32",
]
SHARDS = "webvid/train_4f"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("webvid")
    generate("webvid", root, size=8, video_size=(64, 48), duration=2.0, workers=2)
    with open(root / "results_2M_train.csv", "a") as f:  # a row whose video is missing
        f.write("999,https://example.invalid/999.mp4,PT00H00M04S,000001_000050,a missing clip\n")
    return root


@pytest.fixture(scope="module")
def local_build(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local")
    _build(["--data", str(corpus), "--out", str(out), "--workers", "0"])
    return out / SHARDS


def _build(args: list[str], quiet: bool = True) -> str:
    proc = subprocess.run(
        [PY, str(ROOT / "scripts/build_shards.py"), *BUILD, *args] + ["--quiet"] * quiet,
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _objects(url: str) -> dict[str, bytes]:
    """Every object under ``url`` (relative name -> bytes)."""
    fs, path = url_fs(url)
    fs.invalidate_cache()
    return {p[len(path) + 1 :]: fs.cat_file(p) for p in fs.find(path)}


def _shard_sha256(manifest: dict) -> list[tuple[str, str]]:
    return [(s["name"], s["sha256"]) for s in manifest["shards"]]


def test_build_to_s3_matches_local(corpus: Path, local_build: Path, s3_url: str) -> None:
    out = s3_url
    _build(["--data", str(corpus), "--out", out, "--workers", "2"])
    objects = _objects(f"{out}/{SHARDS}")
    local = read_manifest(local_build)
    remote = json.loads(objects["manifest.json"])
    assert _shard_sha256(remote) == _shard_sha256(local)
    for name, _ in _shard_sha256(local):
        assert objects[name] == (local_build / name).read_bytes()
    assert objects["failures.jsonl"] == (local_build / "failures.jsonl").read_bytes()
    assert sorted(k for k in objects if k.startswith(".done/")) == [
        f".done/{name}.json" for name, _ in _shard_sha256(local)
    ]


def _kill_during_upload(corpus: Path, out: str, at: int, flag: Path) -> None:
    """Start the build, wait until its ``at``-th shard upload is half sent, SIGKILL it."""
    proc = subprocess.Popen(
        [PY, str(ROOT / "tests/s3_kill_upload.py"), *BUILD, "--data", str(corpus)]
        + ["--out", out, "--workers", "0", "--quiet"],
        env=os.environ | {"KILL_AT_UPLOAD": str(at), "KILL_FLAG": str(flag)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not flag.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # waiting for the flag, not racing it: the upload blocks until killed
    assert flag.exists(), proc.communicate()[1].decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_sigkill_during_upload_then_rerun(
    corpus: Path, local_build: Path, s3_url: str, tmp_path: Path
) -> None:
    out = s3_url
    folder = f"{out}/{SHARDS}"
    # An older complete build (another seed) in the same prefix: its manifest must go first.
    _build(["--data", str(corpus), "--out", out, "--workers", "0", "--seed", "1"])
    older = _objects(folder)
    assert "manifest.json" in older
    _kill_during_upload(corpus, out, at=2, flag=tmp_path / "flag")
    left = _objects(folder)
    assert "manifest.json" not in left, "a killed build left a manifest"
    local = dict(_shard_sha256(read_manifest(local_build)))
    first, second = sorted(local)[:2]
    assert left[first] == (local_build / first).read_bytes()  # published, then its marker
    assert f".done/{first}.json" in left
    assert left[second] == older[second]  # half sent when killed: the store kept the old object
    assert left[second] != (local_build / second).read_bytes()
    out_text = _build(["--data", str(corpus), "--out", out, "--workers", "0"], quiet=False)
    assert "[shards] 1 of 3 shards were already complete (kept)" in out_text
    done = _objects(folder)
    assert dict(_shard_sha256(json.loads(done["manifest.json"]))) == local
    for name in local:
        assert done[name] == (local_build / name).read_bytes()
    staged = staging_dir(folder)  # the half-sent shard's local copy is gone too
    assert sorted(p.name for p in staged.rglob("*")) == [".done", ".lock"]


def _verify(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, str(ROOT / "scripts/verify_shards.py"), url, "--quiet"],
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        timeout=300,
    )


def test_verify_url_passes_then_names_tampered_object(
    corpus: Path, local_build: Path, s3_url: str
) -> None:
    out = s3_url
    folder = f"{out}/{SHARDS}"
    _build(["--data", str(corpus), "--out", out, "--workers", "0"])
    assert verdict(folder) == (
        True,
        f"OK {folder}: 3 shards, 8 samples, 1 failed inputs; sha256, counts, members and JPEGs "
        "check out",
    )
    _, name, last = [s["name"] for s in read_manifest(local_build)["shards"]]
    fs, path = url_fs(f"{folder}/{name}")
    data = bytearray(fs.cat_file(path))
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    fs.pipe_file(path, bytes(data))
    bad = _verify(folder)
    assert bad.returncode == 1, bad
    assert f"{folder}/{name}: sha256 differs from the manifest" in bad.stdout, bad.stdout
    fs.rm_file(f"{path.rsplit('/', 1)[0]}/{last}")
    problems = verify_dir(folder)
    assert f"{folder}/{last}: listed in the manifest but missing" in problems, problems


def test_webvid_csv_and_videos_read_from_s3(
    corpus: Path, local_build: Path, s3_url: str, tmp_path: Path
) -> None:
    data = f"{s3_url}/data/webvid"
    fs, path = url_fs(data)
    fs.put(str(corpus), path, recursive=True)
    out = tmp_path / "out"
    _build(["--data", data, "--out", str(out), "--workers", "0"])
    assert _shard_sha256(read_manifest(out / SHARDS)) == _shard_sha256(read_manifest(local_build))
    failures = (out / SHARDS / "failures.jsonl").read_text()
    assert f"missing file {data}/videos/000001_000050/999.mp4" in failures
    # The inputs' fingerprints (sizes asked from the store) are stable: a re-run keeps all.
    again = _build(["--data", data, "--out", str(out), "--workers", "0"], quiet=False)
    assert "[shards] 3 of 3 shards were already complete (kept)" in again


@pytest.fixture
def http_corpus(corpus: Path) -> Iterator[str]:
    """The corpus folder served read-only over plain HTTP on 127.0.0.1."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(corpus))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def test_webvid_read_over_http_and_http_refused_as_out(
    http_corpus: str, local_build: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    import build_shards

    args = [*BUILD, "--data", http_corpus, "--workers", "0", "--quiet"]
    assert cli(lambda: build_shards.main([*args, "--out", str(tmp_path)])) == 0
    assert _shard_sha256(read_manifest(tmp_path / SHARDS)) == _shard_sha256(
        read_manifest(local_build)
    )
    capsys.readouterr()
    assert cli(lambda: build_shards.main([*args, "--out", f"{http_corpus}/shards"])) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write to {http_corpus}/shards: http://"), err
    assert "read-only" in err and err.count("\n") == 1


def test_missing_bucket_is_one_line_before_any_work(
    corpus: Path, s3_server: object, capsys: pytest.CaptureFixture
) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    import build_shards

    out = "s3://no-such-bucket-t2v2t/shards"
    args = [*BUILD, "--data", str(corpus), "--workers", "0", "--quiet", "--out", out]
    assert cli(lambda: build_shards.main(args)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: bucket no-such-bucket-t2v2t does not exist (OUT={out})"), err
    assert err.count("\n") == 1
