"""Reading shards from object storage: the node cache (t2v2t.data.cache) and the readers that go
through it, against a real S3 server on 127.0.0.1 (tests/s3_server.py). docs/storage.md,
"Object storage". Fetches are counted from the server's own request log."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from train_shards import make_train_shards

from t2v2t import storage
from t2v2t.data.cache import CachedFile, NodeCache
from t2v2t.data.shards import ShardError, read_manifest, sha256_file


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """Every process this test starts uses a fresh node cache under tmp_path."""
    path = tmp_path / "node-cache"
    monkeypatch.setenv("T2V2T_CACHE", str(path))
    monkeypatch.delenv("T2V2T_CACHE_GB", raising=False)
    return path


def upload_folder(local: Path, url: str) -> str:
    """Publish a local shard folder under ``url``: shards first, the manifest last."""
    names = sorted(p.name for p in local.iterdir() if p.name != "manifest.json")
    for name in [*names, "manifest.json"]:
        storage.put_file(local / name, storage.join(url, name))
    return url


@pytest.fixture
def remote_shards(tmp_path, s3_url) -> tuple[Path, str]:
    """A small shard set written locally with the real writer, and its copy on S3."""
    local = make_train_shards(tmp_path / "shards", num_samples=40, per_shard=8, size=16)
    return local, upload_folder(local, f"{s3_url}/toy/train_4f")


def _first_shard(local: Path, url: str) -> tuple[str, str, int, bytes]:
    info = read_manifest(local)["shards"][0]
    data = (local / info["name"]).read_bytes()
    return storage.join(url, info["name"]), info["sha256"], info["bytes"], data


def test_cache_fetches_once_and_checks(s3_server, remote_shards, cache_dir):
    obj, sha, size, data = _first_shard(*remote_shards)
    cache = NodeCache.from_env()
    assert cache.root == cache_dir
    for _ in range(3):
        with cache.open(obj, sha, size) as f:
            assert isinstance(f, CachedFile) and f.read() == data
    assert s3_server.object_gets(obj) == 1
    entry = cache.entry(obj, sha)
    assert sha256_file(entry) == sha and entry.stat().st_mtime_ns == 0  # sealed


def test_cache_refetches_a_damaged_copy_once(s3_server, remote_shards, cache_dir):
    obj, sha, size, data = _first_shard(*remote_shards)
    cache = NodeCache.from_env()
    cache.open(obj, sha, size).close()
    entry = cache.entry(obj, sha)
    entry.chmod(0o644)
    with open(entry, "r+b") as f:  # one flipped byte, same size
        f.seek(size // 2)
        byte = f.read(1)
        f.seek(size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    with cache.open(obj, sha, size) as f:
        assert f.read() == data
    assert s3_server.object_gets(obj) == 2


def test_cache_refuses_a_tampered_object_naming_it(s3_server, remote_shards, cache_dir, tmp_path):
    obj, sha, size, data = _first_shard(*remote_shards)
    bad = tmp_path / "bad.tar.zst"
    bad.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    storage.put_file(bad, obj)
    cache = NodeCache.from_env()
    with pytest.raises(ShardError, match=rf"^{obj}: sha256 differs from the manifest"):
        cache.open(obj, sha, size)
    assert s3_server.object_gets(obj) == 2  # fetched again once, then the error
    assert not cache.entry(obj, sha).exists()
    assert list((cache_dir / ".tmp").iterdir()) == []


def test_cache_evicts_least_recently_used_but_never_an_open_copy(s3_server, remote_shards):
    local, url = remote_shards
    infos = read_manifest(local)["shards"][:4]
    one = max(i["bytes"] for i in infos)
    cache = NodeCache(local.parent / "cache", max_bytes=2 * one)
    objs = [(storage.join(url, i["name"]), i["sha256"], i["bytes"]) for i in infos]
    held = cache.open(*objs[0])  # open for the whole test: never evicted
    cache.open(*objs[1]).close()
    cache.open(*objs[2]).close()  # over the bound: 1 goes (0 is open)
    assert cache.entry(*objs[0][:2]).exists() and not cache.entry(*objs[1][:2]).exists()
    cache.open(*objs[3]).close()  # 2 is the least recently used closed copy
    assert not cache.entry(*objs[2][:2]).exists() and cache.entry(*objs[3][:2]).exists()
    assert held.read() == (local / infos[0]["name"]).read_bytes()
    held.close()
    os.utime(cache._lock_path(objs[3][1], "use"), (1, 1))  # make 3 the oldest use
    (cache.root / "notes.txt").write_bytes(b"x" * 10 * one)  # not a copy: never touched
    assert cache.evict(incoming=one) == infos[3]["bytes"]
    assert cache.evict(incoming=10 * one) == infos[0]["bytes"]
    assert (cache.root / "notes.txt").exists()


@pytest.mark.parametrize("gb", ["0", "-1", "lots"])
def test_cache_bound_setting_is_checked(monkeypatch, gb):
    from t2v2t.errors import UsageError

    monkeypatch.setenv("T2V2T_CACHE_GB", gb)
    with pytest.raises(UsageError, match=f"T2V2T_CACHE_GB={gb}"):
        NodeCache.from_env()


def _open_and_read(args: tuple[str, str, int, object]) -> bytes:
    obj, sha, size, barrier = args
    barrier.wait()  # all processes ask at the same moment
    with NodeCache.from_env().open(obj, sha, size) as f:
        return f.read()


def test_cache_processes_on_one_node_fetch_once(s3_server, remote_shards, cache_dir):
    import multiprocessing as mp

    obj, sha, size, data = _first_shard(*remote_shards)
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=_open_and_read, args=((obj, sha, size, barrier),)) for _ in "abc"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert s3_server.object_gets(obj) == 1
    assert sha256_file(NodeCache.from_env().entry(obj, sha)) == sha


# ----------------------------------------------------------------------------- readers over URLs

ROOT = Path(__file__).resolve().parents[1]


ARGS = ["--image-size", "16", "--batch-size", "3", "--shuffle-buffer", "4", "--seed", "3"]


def _inspect(shards: str | Path, *args: str) -> subprocess.CompletedProcess:
    """scripts/inspect_stream.py in its own process (it inherits the server's environment)."""
    cmd = [sys.executable, str(ROOT / "scripts" / "inspect_stream.py"), "--shards", str(shards)]
    return subprocess.run(
        [*cmd, *ARGS, *args], capture_output=True, text=True, timeout=180, cwd=ROOT
    )


@pytest.fixture
def inspect_here(capsys):
    """The same script's ``main`` in this process (no interpreter start): its printed lines."""
    spec = importlib.util.spec_from_file_location(
        "inspect_stream", ROOT / "scripts/inspect_stream.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)

    def run(shards: str | Path, *args: str, status: int = 0) -> str:
        """Its stdout, or its stderr when it is to exit with ``status`` != 0."""
        capsys.readouterr()
        assert tool.main(["--shards", str(shards), *ARGS, *args]) == status
        out = capsys.readouterr()
        return out.out if status == 0 else out.err

    return run


def test_manifest_reads_from_a_url(s3_server, remote_shards, s3_url):
    local, url = remote_shards
    assert read_manifest(url) == read_manifest(local)
    assert read_manifest(url + "/") == read_manifest(local)
    with pytest.raises(ShardError, match=rf"^{s3_url}/nothing/manifest.json not found"):
        read_manifest(f"{s3_url}/nothing")


def test_inspect_stream_over_s3_is_the_local_stream_fetching_each_shard_once(
    s3_server, remote_shards, cache_dir, inspect_here
):
    """With two loader workers reading every shard, each shard crosses the network once."""
    local, url = remote_shards
    want = inspect_here(local, "--epoch", "1", "--workers", "2")
    assert len(want.splitlines()) == 40
    got = _inspect(url, "--epoch", "1", "--workers", "2")  # the CLI itself, once
    assert got.returncode == 0, got.stderr
    assert got.stdout == want
    names = [s["name"] for s in read_manifest(local)["shards"]]
    assert [s3_server.object_gets(f"{url}/{n}") for n in names] == [1] * len(names)
    # Another epoch on this node: served from the cache, nothing fetched again.
    again = inspect_here(url, "--epoch", "2", "--workers", "2")
    assert again == inspect_here(local, "--epoch", "2", "--workers", "2") != want
    assert [s3_server.object_gets(f"{url}/{n}") for n in names] == [1] * len(names)
    assert sorted(p.name.split("-", 1)[1] for p in cache_dir.glob("*.tar.zst")) == names


def test_a_tampered_object_is_refused_naming_it(s3_server, remote_shards, cache_dir, tmp_path):
    local, url = remote_shards
    info = read_manifest(local)["shards"][2]
    data = bytearray((local / info["name"]).read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the digest can tell
    (tmp_path / "bad").write_bytes(bytes(data))
    obj = f"{url}/{info['name']}"
    storage.put_file(tmp_path / "bad", obj)
    res = _inspect(url, "--workers", "2")
    assert res.returncode == 2
    assert f"{obj}: sha256 differs from the manifest" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    # data.skip_bad_shards=true: the object leaves the plan with one counted warning.
    from t2v2t.data.loader import TrainSource, make_train_loader
    from t2v2t.data.shard_checks import ShardWarning

    with pytest.warns(ShardWarning, match="skipped 1 of 5 shards"):
        loader = make_train_loader(
            [TrainSource(url, 3, 4)], None, seed=0, epoch=0, image_size=16, skip_bad_shards=True
        )
    assert len(loader.skipped_shards) == 1 and obj in loader.skipped_shards[0]
    assert loader.num_samples == 32


def test_evaluation_reads_a_url_like_the_local_copy(s3_server, remote_shards, cache_dir):
    from t2v2t.data.eval_loader import eval_texts, make_eval_loader

    local, url = remote_shards

    def keys(where: str | Path) -> list[str]:
        loader = make_eval_loader(where, batch_size=4, num_frames=4, image_size=16, num_workers=2)
        return [k for batch in loader for k in batch["keys"]]

    assert keys(url) == keys(local)
    assert eval_texts(url) == eval_texts(local)


def test_training_config_accepts_a_shard_url(s3_server, remote_shards, s3_url):
    from t2v2t.training.config import ConfigError, load_config
    from t2v2t.training.preflight import check_files

    _, url = remote_shards
    over = [f"data.sources.webvid.dir={url}", "data.sources.cc3m=null"]
    check_files(load_config("pretrain", "tiny", over))
    missing = [f"data.sources.webvid.dir={s3_url}/webvid/train_4f", "data.sources.cc3m=null"]
    with pytest.raises(ConfigError, match=r"train_4f has no manifest.json .*DATASET=webvid"):
        check_files(load_config("pretrain", "tiny", missing))


def test_make_eval_over_a_shard_url_root_gives_the_local_results(
    s3_server, s3_url, cache_dir, tmp_path, capsys
):
    """scripts/evaluate.py --shards s3://... (make eval SHARDS=...): the same figures and
    report as over the local copy."""
    import json
    import shutil

    import torch
    from test_evaluate import _save_checkpoint, write_eval_shards

    from t2v2t.models import build_model

    local = write_eval_shards(tmp_path / "shards")
    upload_folder(local, f"{s3_url}/msrvtt/{local.name}")
    torch.manual_seed(0)
    ckpt = tmp_path / "ft" / "best.pt"
    ckpt.parent.mkdir()
    _save_checkpoint(build_model("tiny", "random", overrides={"image_size": 32}).eval(), ckpt)
    spec = importlib.util.spec_from_file_location("_evaluate", ROOT / "scripts/evaluate.py")
    evaluate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evaluate)
    opts = ["eval.k=4", "eval.batch_size=4", "eval.num_frames=4", "eval.max_text_len=16"]
    opts += ["eval.device=cpu", "--ckpt", str(ckpt), "--dataset", "msrvtt", "--preset", "base"]
    results = {}
    out = ckpt.parent / "eval"
    for where in (tmp_path / "shards", s3_url):
        shutil.rmtree(out, ignore_errors=True)  # nothing reused from the run before
        assert evaluate.main(["--shards", str(where), *opts]) == 0
        results[str(where)] = json.loads((out / "msrvtt_test.json").read_text())["results"]
        page = (out / "msrvtt_test.html").read_text(encoding="utf-8")
        assert "data:image/jpeg;base64," in page  # thumbnails read from the shards
    assert results[s3_url] == results[str(tmp_path / "shards")]
    capsys.readouterr()
    assert evaluate.main(["--shards", f"{s3_url}/elsewhere", *opts]) == 2
    err = capsys.readouterr().err
    assert f"{s3_url}/elsewhere/msrvtt/test_12f does not exist" in err, err


@pytest.fixture
def http_root(tmp_path):
    """A read-only plain HTTP server on 127.0.0.1 over tmp_path/www, without directory pages."""
    import functools
    import http.server
    import threading

    class NoIndex(http.server.SimpleHTTPRequestHandler):
        def list_directory(self, path):  # a store that cannot list
            self.send_error(404)

        def log_message(self, *args):
            pass

    www = tmp_path / "www"
    www.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(NoIndex, directory=str(www))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_shards_over_plain_http_read_like_the_local_copy(http_root, cache_dir, inspect_here):
    """A store that cannot list (sizes asked shard by shard), read-only: same stream, cached."""
    import shutil

    www, base = http_root
    local = make_train_shards(www / "shards", num_samples=12, per_shard=5, size=16)
    url = f"{base}/shards/toy/train_4f"
    assert storage.list_sizes(url) == {}
    want = inspect_here(local, "--epoch", "1", "--workers", "2")
    assert inspect_here(url, "--epoch", "1", "--workers", "2") == want
    assert len(list(cache_dir.glob("*.tar.zst"))) == 3
    shutil.copy(local / "toy-train-000001.tar.zst", local / "toy-train-000002.tar.zst")
    err = inspect_here(url, "--epoch", "1", status=2)  # a replaced object, found by its size
    assert re.match(rf"inspect_stream: {url}/toy-train-000002.tar.zst: \d+ bytes, manifest", err)
