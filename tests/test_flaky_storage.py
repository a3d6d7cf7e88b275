"""Object storage that fails transiently (t2v2t.retry through t2v2t.storage, the build's
publishing and verify-shards): through a proxy of our own in front of the real S3 test server that
resets connections, answers 503 SlowDown and stalls a read, everything finishes with the same
bytes; an object refused for ever is one error naming its URL within the retry budget.
docs/reliability.md, "Flaky storage"."""

from __future__ import annotations

import logging
import time

import pytest
import s3fs
from flaky_proxy import FlakyProxy
from train_shards import make_train_shards

from preprocessing.verify import verify_dir
from t2v2t import storage
from t2v2t.data.cache import NodeCache
from t2v2t.data.shards import read_manifest, sha256_file
from t2v2t.retry import StorageError

ATTEMPTS = 5
WAIT_S = 0.05
TIMEOUT_S = 1.0


@pytest.fixture
def flaky(s3_server, monkeypatch):
    """A proxy in front of the S3 server; the process talks to the store only through it."""

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
    yield make
    for proxy in made:
        proxy.close()
    s3fs.S3FileSystem.clear_instance_cache()


def _upload(local, url):
    names = sorted(p.name for p in local.iterdir() if p.name != "manifest.json")
    for name in [*names, "manifest.json"]:
        storage.put_file(local / name, storage.join(url, name))


def test_uploads_reads_and_verify_survive_resets_503_and_a_stall(flaky, s3_url, tmp_path, caplog):
    local = make_train_shards(tmp_path / "shards", num_samples=16, per_shard=4, size=16)
    url = f"{s3_url}/toy/train_4f"
    proxy = flaky(resets=2, busy=2)
    caplog.set_level(logging.WARNING, logger="t2v2t.retry")
    _upload(local, url)
    assert proxy.done["reset"] == 2 and proxy.done["503"] == 2  # the faults really happened
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) >= 2  # each failed attempt is logged (once)
    assert all("s3://" in m for m in retries)

    # Reading: a stalled shard GET times out and is asked again; the copy is the same bytes.
    info = read_manifest(local)["shards"][1]
    proxy = flaky(resets=1, busy=1, stall_match=info["name"].encode())
    start = time.monotonic()
    cache = NodeCache(tmp_path / "cache", 10**9)
    with cache.open(str(storage.join(url, info["name"])), info["sha256"], info["bytes"]) as f:
        assert f.read() == (local / info["name"]).read_bytes()
    assert proxy.done["stall"] == 1 and proxy.done["reset"] == 1
    assert time.monotonic() - start < 30
    with storage.open_read(storage.join(url, info["name"])) as f:
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
    flaky(resets=0, busy=0, refuse_match=b"refused.bin")
    start = time.monotonic()
    with pytest.raises(StorageError) as err:
        storage.get_file(target, tmp_path / "copy.bin")
    took = time.monotonic() - start
    message = str(err.value)
    assert target in message and "\n" not in message
    assert f"{ATTEMPTS} times" in message
    # Budget: the waits (at most WAIT_S * (1 + 2 + 4 + 8)) plus the attempts themselves.
    assert took < WAIT_S * 15 + ATTEMPTS * 2
