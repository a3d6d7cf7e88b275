"""Object storage that fails transiently (t2v2t.retry through t2v2t.storage, the build's
publishing, the node cache and verify-shards): through a proxy of our own in front of the real S3
test server that resets connections, answers 503 SlowDown and stalls a read, the build, a
training epoch and verify-shards finish with the bytes, losses and verdict of a run straight to
the server; an object refused for ever stops each of them with one error line naming its URL,
after exactly ``T2V2T_RETRIES`` attempts within the retry budget (the proxy counts and times the
attempts itself). docs/reliability.md, "Flaky storage"."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import s3fs
from flaky_proxy import FlakyProxy
from train_shards import make_train_shards, tiny_overrides

from preprocessing.synthetic import generate
from preprocessing.verify import verify_dir
from t2v2t import storage
from t2v2t.data.cache import NodeCache
from t2v2t.data.shards import read_manifest, sha256_file
from t2v2t.errors import cli
from t2v2t.retry import StorageError

ROOT = Path(__file__).resolve().parents[1]
ATTEMPTS = 5
WAIT_S = 0.05
TIMEOUT_S = 2.0  # a stalled read counts as failed after this long
SLACK_S = 5.0  # allowed for the attempts themselves on a loaded machine
SHARDS = "webvid/train_4f"
BUILD = ["--dataset", "webvid", "--samples-per-shard", "2", "--short-side", "32", "--quiet"]
RETRY_LINE = re.compile(r"^(\S+): (\w+) failed .*; retry (\d+) of \d+ in [\d.]+ s$", re.M)


@pytest.fixture
def flaky(s3_server, monkeypatch):
    """A proxy in front of the S3 server; this process and the commands it starts talk to the
    store only through it (``AWS_ENDPOINT_URL``) from the call on."""

    def make(**kw) -> FlakyProxy:
        proxy = FlakyProxy(s3_server.endpoint, **kw)
        made.append(proxy)
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        s3fs.S3FileSystem.clear_instance_cache()  # instances remember their endpoint
        return proxy

    made: list[FlakyProxy] = []
    monkeypatch.setenv("T2V2T_RETRIES", str(ATTEMPTS))
    monkeypatch.setenv("T2V2T_RETRY_WAIT", str(WAIT_S))
    monkeypatch.setenv("T2V2T_STORAGE_TIMEOUT", str(TIMEOUT_S))
    s3fs.S3FileSystem.clear_instance_cache()
    yield make
    for proxy in made:
        proxy.close()
    s3fs.S3FileSystem.clear_instance_cache()


def _command(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m <module> args`` with this environment (the proxy's endpoint once made);
    ``.error_at``: when its first ``error:`` line arrived (monotonic), None without one."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
    )
    lines: list[str] = []
    error_at: list[float] = []

    def read_stderr() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            if line.startswith("error:") and not error_at:
                error_at.append(time.monotonic())
            lines.append(line)

    reader = threading.Thread(target=read_stderr)
    reader.start()
    watchdog = threading.Timer(300, proc.kill)  # a hung command fails the test, not the session
    watchdog.start()
    out = proc.stdout.read()  # type: ignore[union-attr]
    proc.wait()
    watchdog.cancel()
    reader.join()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, "".join(lines))
    done.error_at = error_at[0] if error_at else None  # type: ignore[attr-defined]
    return done


def _key(url: str) -> bytes:
    """The request path of an object (``/bucket/key``), as it appears in a request line."""
    return ("/" + str(url).removeprefix("s3://")).encode()


def _objects(url: str) -> dict[str, bytes]:
    """Every object under ``url`` (relative name -> bytes), read straight from the server."""
    fs, path = storage.url_fs(url)
    fs.invalidate_cache()
    return {p[len(path) + 1 :]: fs.cat_file(p) for p in fs.find(path)}


def _retries(stderr: str) -> list[tuple[str, str, int]]:
    """(URL, request, retry number) of every retry line a command logged."""
    return [(m[1], m[2], int(m[3])) for m in RETRY_LINE.finditer(stderr)]


def _logged_once_each(stderr: str, proxy: FlakyProxy, stalled: str) -> None:
    """Every 503 and the stall cost one logged retry (a reset may cost none: aiohttp resends an
    idempotent request once on a dropped connection); the stalled request's retries are
    numbered 1, 2, ... with none logged twice; every line names a URL of the command."""
    retries = _retries(stderr)
    assert len(retries) >= proxy.done["503"] + proxy.done["stall"], stderr
    numbers = [n for u, _, n in retries if u == stalled]
    assert numbers and numbers == list(range(1, len(numbers) + 1)), stderr
    assert all(u.startswith("s3://") for u, _, _ in retries), stderr


def _one_error_naming(stderr: str, url: str) -> str:
    """The command's single ``error:`` line, which must name ``url`` and the attempts."""
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert url in errors[0] and f"failed {ATTEMPTS} times" in errors[0], errors[0]
    assert "Traceback" not in stderr, stderr
    return errors[0]


def _within_budget(proxy: FlakyProxy, ended: float, wait_s: float = WAIT_S) -> None:
    """Exactly ATTEMPTS attempts, no further apart than the waits can add up to (full jitter:
    each at most ``wait_s`` x 1, 2, 4, 8), and the error line (at ``ended``) right after."""
    at = proxy.refused_at
    assert len(at) == ATTEMPTS, at  # s3fs's and botocore's own retry loops add none
    assert at[-1] - at[0] <= wait_s * (2 ** (ATTEMPTS - 1) - 1) + SLACK_S
    assert ended - at[-1] <= SLACK_S


def _upload(local, url):
    names = sorted(p.name for p in local.iterdir() if p.name != "manifest.json")
    for name in [*names, "manifest.json"]:
        storage.put_file(local / name, storage.join(url, name))


@pytest.fixture
def toy_url(s3_server, s3_url, tmp_path) -> tuple[Path, str]:
    """16 training samples in 4 shards, written locally and uploaded straight to the server."""
    local = make_train_shards(tmp_path / "shards", num_samples=16, per_shard=4, size=16)
    url = f"{s3_url}/toy/train_4f"
    _upload(local, url)
    return local, url


def test_uploads_reads_and_verify_survive_resets_503_and_a_stall(flaky, s3_url, tmp_path, caplog):
    local = make_train_shards(tmp_path / "shards", num_samples=16, per_shard=4, size=16)
    url = f"{s3_url}/toy/train_4f"
    proxy = flaky(resets=2, busy=2)
    caplog.set_level(logging.WARNING, logger="t2v2t.retry")
    _upload(local, url)
    assert proxy.done["reset"] == 2 and proxy.done["503"] == 2  # the faults really happened
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) >= 2  # each 503 is one logged retry (aiohttp may absorb a reset)
    assert all("s3://" in m for m in retries)

    # Reading: a stalled shard GET times out and is asked again; the copy is the same bytes.
    info = read_manifest(local)["shards"][1]
    shard = str(storage.join(url, info["name"]))
    proxy = flaky(resets=1, busy=1, stall_match=b"GET " + _key(shard))
    start = time.monotonic()
    cache = NodeCache(tmp_path / "cache", 10**9)
    with cache.open(shard, info["sha256"], info["bytes"]) as f:
        assert f.read() == (local / info["name"]).read_bytes()
    assert proxy.done["stall"] == 1 and proxy.done["reset"] == 1
    assert time.monotonic() - start < 30
    with storage.open_read(shard) as f:
        assert f.read() == (local / info["name"]).read_bytes()

    # verify-shards through a store that keeps resetting and refusing at first.
    flaky(resets=2, busy=2)
    assert verify_dir(url) == []
    assert sha256_file(local / info["name"]) == info["sha256"]


def test_a_refused_object_is_one_error_naming_it_within_the_budget(flaky, s3_url, tmp_path):
    src = tmp_path / "obj.bin"
    src.write_bytes(b"x" * 1000)
    target = f"{s3_url}/refused.bin"
    storage.put_file(src, target)  # straight to the server
    proxy = flaky(resets=0, busy=0, refuse_match=b"refused.bin")
    with pytest.raises(StorageError) as err:
        storage.get_file(target, tmp_path / "copy.bin")
    _within_budget(proxy, time.monotonic())
    message = str(err.value)
    assert target in message and "\n" not in message
    assert f"{ATTEMPTS} times" in message


def test_processes_waiting_for_a_refused_shard_spend_one_budget(
    flaky, toy_url, tmp_path, monkeypatch
):
    """Two readers of one node cache want the same refused shard: the first tries the store
    T2V2T_RETRIES times, the one waiting for it meanwhile gets the same error without asking
    the store again (flock holds between the two descriptors as between processes)."""
    local, url = toy_url
    info = read_manifest(local)["shards"][0]
    shard = f"{url}/{info['name']}"
    proxy = flaky(resets=0, busy=0, refuse_match=_key(shard) + b" ")
    monkeypatch.setenv("T2V2T_RETRY_WAIT", "0.3")  # the first is still at it when the second asks
    cache = NodeCache(tmp_path / "cache", 10**9)
    errors: list[str] = []

    def read() -> None:
        with pytest.raises(StorageError) as err:
            cache.open(shard, info["sha256"], info["bytes"])
        errors.append(str(err.value))

    first = threading.Thread(target=read)
    first.start()
    while not proxy.refused_at:  # the first reader holds the fill lock and is being refused
        time.sleep(0.005)
    second = threading.Thread(target=read)
    second.start()
    first.join()
    second.join()
    _within_budget(proxy, time.monotonic(), 0.3)  # ATTEMPTS refusals in all, not two budgets
    assert len(errors) == 2 and errors[0] == errors[1] and shard in errors[0]


# ---------------------------------------------------------------- the commands, end to end


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic WebVid corpus of 6 real MP4s (3 shards of 2)."""
    root = tmp_path_factory.mktemp("webvid")
    generate("webvid", root, size=6, video_size=(64, 48), duration=1.0, workers=0)
    return root


def _build(corpus: Path, out: str, workers: int = 0) -> subprocess.CompletedProcess[str]:
    """``python -m t2v2t.shards`` (``make shards``) of the corpus into ``out``."""
    return _command(
        "t2v2t.shards", *BUILD, "--data", str(corpus), "--out", out, "--workers", str(workers)
    )


def _flaky_build_equals_direct(flaky, s3_url: str, corpus: Path, workers: int) -> None:
    direct = _build(corpus, f"{s3_url}/direct", workers)
    assert direct.returncode == 0, direct.stderr
    want = _objects(f"{s3_url}/direct/{SHARDS}")
    assert "manifest.json" in want and len([k for k in want if k.endswith(".tar.zst")]) == 3
    out = f"{s3_url}/flaky"
    stalled = f"{out}/{SHARDS}/webvid-train-000001.tar.zst"
    proxy = flaky(resets=2, busy=2, stall_match=b"PUT " + _key(stalled))
    got = _build(corpus, out, workers)
    assert got.returncode == 0, got.stderr
    assert proxy.done == {"reset": 2, "503": 2, "stall": 1}  # the faults really happened
    assert _objects(f"{out}/{SHARDS}") == want  # shards, markers, failures, manifest
    _logged_once_each(got.stderr, proxy, stalled)


def test_build_through_a_flaky_store_publishes_the_same_objects(flaky, s3_url, corpus):
    """`make shards OUT=s3://...` through resets, 503s and a stalled upload: every object the
    same bytes as a build straight to the server."""
    _flaky_build_equals_direct(flaky, s3_url, corpus, workers=0)


def _refused_build(flaky, s3_url: str, corpus: Path, workers: int) -> None:
    out = f"{s3_url}/refused"
    shard = f"{out}/{SHARDS}/webvid-train-000001.tar.zst"
    proxy = flaky(resets=0, busy=0, refuse_match=b"PUT " + _key(shard))
    got = _build(corpus, out, workers)
    assert got.returncode == 2, got.stderr
    _one_error_naming(got.stderr, shard)
    _within_budget(proxy, got.error_at)
    assert "manifest.json" not in _objects(f"{out}/{SHARDS}")  # an unfinished build shows none


def test_build_to_a_refused_object_is_one_error_line(flaky, s3_url, corpus):
    _refused_build(flaky, s3_url, corpus, workers=0)


def _losses(run: Path) -> list[dict]:
    from t2v2t.training.metrics_log import read_metrics

    terms = ("step", "epoch", "loss", "vtc", "vtm", "mlm", "lr")
    rows = [r for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    return [{k: r.get(k) for k in terms} for r in rows]


def _train_args(url: str, run: Path, *extra: str) -> list[str]:
    over = tiny_overrides(url, "optim.epochs=1", "train.ckpt_every_steps=0", *extra)  # type: ignore[arg-type]
    return ["--task", "pretrain", "--preset", "tiny", "--run", str(run), *over]


def test_training_epoch_through_a_flaky_store_has_the_same_losses(
    flaky, toy_url, tmp_path, monkeypatch, capsys
):
    """A tiny pre-training epoch from S3 shards (the node cache's downloads, the manifest and
    listing reads) through resets, 503s and a stalled shard read: the losses of a run straight
    to the server, bit for bit; a shard refused for ever stops the run with one error line."""
    from t2v2t import train as train_cmd

    local, url = toy_url
    names = [s["name"] for s in read_manifest(local)["shards"]]
    monkeypatch.setenv("T2V2T_CACHE", str(tmp_path / "cache-direct"))
    assert cli(lambda: train_cmd.main(_train_args(url, tmp_path / "direct"))) == 0
    want = _losses(tmp_path / "direct")
    assert [r["step"] for r in want] == [1, 2]

    monkeypatch.setenv("T2V2T_CACHE", str(tmp_path / "cache-flaky"))  # every shard fetched
    proxy = flaky(resets=2, busy=2, stall_match=b"GET " + _key(f"{url}/{names[1]}"))
    assert cli(lambda: train_cmd.main(_train_args(url, tmp_path / "flaky"))) == 0
    assert proxy.done == {"reset": 2, "503": 2, "stall": 1}
    assert _losses(tmp_path / "flaky") == want

    monkeypatch.setenv("T2V2T_CACHE", str(tmp_path / "cache-refused"))
    refused = f"{url}/{names[2]}"
    proxy = flaky(resets=0, busy=0, refuse_match=_key(refused) + b" ")
    capsys.readouterr()
    assert cli(lambda: train_cmd.main(_train_args(url, tmp_path / "refused"))) == 2
    ended = time.monotonic()
    _one_error_naming(capsys.readouterr().err, refused)
    _within_budget(proxy, ended)


def _verify(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return _command("t2v2t.verify_shards", url, "--quiet", *extra)


def _flaky_verify_equals_direct(flaky, toy_url, *extra: str) -> None:
    local, url = toy_url
    direct = _verify(url, *extra)
    assert direct.returncode == 0 and direct.stdout.startswith(f"OK {url}: 4 shards"), direct
    names = [s["name"] for s in read_manifest(local)["shards"]]
    stalled = f"{url}/{names[3]}"
    proxy = flaky(resets=2, busy=2, stall_match=b"GET " + _key(stalled))
    got = _verify(url, *extra)
    assert got.returncode == 0, got.stderr
    assert proxy.done == {"reset": 2, "503": 2, "stall": 1}
    assert got.stdout == direct.stdout
    _logged_once_each(got.stderr, proxy, stalled)


def test_verify_shards_through_a_flaky_store_gives_the_same_verdict(flaky, toy_url):
    _flaky_verify_equals_direct(flaky, toy_url)


def _refused_verify(flaky, toy_url, *extra: str) -> None:
    local, url = toy_url
    refused = f"{url}/{read_manifest(local)['shards'][2]['name']}"
    proxy = flaky(resets=0, busy=0, refuse_match=_key(refused) + b" ")
    got = _verify(url, *extra)
    assert got.returncode == 2, got
    _one_error_naming(got.stderr, refused)
    _within_budget(proxy, got.error_at)


def test_verify_shards_of_a_refused_object_is_one_error_line(flaky, toy_url):
    _refused_verify(flaky, toy_url)


# ---------------------------------------------------------------- with worker processes


@pytest.mark.slow
def test_build_on_dask_workers_through_a_flaky_store(flaky, s3_url, corpus):
    """As the in-process build, on 2 local Dask worker processes (each its own connections);
    the refused upload's error comes back from the worker at once (Dask does not run the task
    again: one retry budget)."""
    _flaky_build_equals_direct(flaky, s3_url, corpus, workers=2)
    _refused_build(flaky, s3_url, corpus, workers=2)


@pytest.mark.slow
def test_verify_shards_on_dask_workers_through_a_flaky_store(flaky, toy_url):
    _flaky_verify_equals_direct(flaky, toy_url, "--workers", "2")
    _refused_verify(flaky, toy_url, "--workers", "2")


@pytest.mark.slow
def test_training_with_loader_workers_through_a_flaky_store(flaky, toy_url, tmp_path, monkeypatch):
    """`python -m t2v2t.train` with 2 loader worker processes (each fetching its shards through
    the node cache): the same losses through the proxy; a refused shard is one error line."""
    local, url = toy_url
    names = [s["name"] for s in read_manifest(local)["shards"]]
    workers = "data.num_workers=2"
    monkeypatch.setenv("T2V2T_CACHE", str(tmp_path / "cache-direct"))
    direct = _command("t2v2t.train", *_train_args(url, tmp_path / "direct", workers))
    assert direct.returncode == 0, direct.stderr
    monkeypatch.setenv("T2V2T_CACHE", str(tmp_path / "cache-flaky"))
    proxy = flaky(resets=2, busy=2, stall_match=b"GET " + _key(f"{url}/{names[0]}"))
    got = _command("t2v2t.train", *_train_args(url, tmp_path / "flaky", workers))
    assert got.returncode == 0, got.stderr
    assert proxy.done == {"reset": 2, "503": 2, "stall": 1}
    assert _losses(tmp_path / "flaky") == _losses(tmp_path / "direct")
    monkeypatch.setenv("T2V2T_CACHE", str(tmp_path / "cache-refused"))
    refused = f"{url}/{names[1]}"
    proxy = flaky(resets=0, busy=0, refuse_match=_key(refused) + b" ")
    bad = _command("t2v2t.train", *_train_args(url, tmp_path / "refused", workers))
    assert bad.returncode == 2, bad.stderr
    _one_error_naming(bad.stderr, refused)
    _within_budget(proxy, bad.error_at)
