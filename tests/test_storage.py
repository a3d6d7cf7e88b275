"""Object storage through fsspec (t2v2t.storage) against a real S3 server on 127.0.0.1
(tests/s3_server.py). docs/storage.md, "Object storage"."""

from __future__ import annotations

import pickle
from pathlib import Path

import boto3
import pytest

from t2v2t import storage
from t2v2t.errors import UsageError


def test_s3_server_answers_and_logs_gets(s3_server, s3_url):
    """The fixture's server is a real S3 endpoint reached through AWS_ENDPOINT_URL, and its
    request log counts GETs per object."""
    key = s3_url.removeprefix(f"s3://{s3_server.bucket}/") + "/hello.txt"
    client = boto3.client("s3")  # endpoint and credentials from the environment only
    client.put_object(Bucket=s3_server.bucket, Key=key, Body=b"hello")
    assert s3_server.object_gets(f"{s3_url}/hello.txt") == 0
    body = client.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()
    assert body == b"hello"
    assert s3_server.object_gets(f"{s3_url}/hello.txt") == 1


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    """The same checks on a local folder and on a prefix of the real S3 server."""
    if request.param == "local":
        return tmp_path / "store"
    return request.getfixturevalue("s3_url")


def test_round_trip_local_and_s3(root, tmp_path):
    src = tmp_path / "a.bin"
    src.write_bytes(b"x" * 1000)
    dest = storage.join(root, "sub", "a.bin")
    assert isinstance(dest, str) == storage.is_url(root)
    assert not storage.exists(dest)
    assert storage.list_sizes(storage.join(root, "sub")) == {}
    storage.put_file(src, dest)
    assert storage.exists(dest)
    assert storage.size(dest) == 1000
    assert storage.list_sizes(storage.join(root, "sub")) == {"a.bin": 1000}
    with storage.open_read(dest) as f:
        assert f.read() == b"x" * 1000
    storage.get_file(dest, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == b"x" * 1000
    missing = storage.join(root, "sub", "nope.bin")
    with pytest.raises(FileNotFoundError) as err:
        storage.size(missing)
    assert err.value.filename == str(missing)
    with pytest.raises(FileNotFoundError, match="nope.bin"):
        storage.open_read(missing)


def test_shard_folder_lists_opens_and_joins(root, tmp_path):
    """A ShardFolder, made once from a path or URL, lists, opens and joins as the module's
    helpers do, and survives pickling into a loader worker unchanged."""
    folder = storage.ShardFolder.of(root)
    assert storage.ShardFolder.of(folder) is folder  # made once: handed on as is
    assert folder.remote == storage.is_url(root)
    assert str(folder) == str(root) and folder.name == storage.basename(root)
    assert not folder.exists()  # nothing there yet, on disk or under the prefix
    assert not folder.has("a.bin") and folder.list_sizes() == {}
    src = tmp_path / "a.bin"
    src.write_bytes(b"abc" * 7)
    storage.put_file(src, folder.join("a.bin"))
    assert folder.join("a.bin") == storage.join(root, "a.bin")
    assert isinstance(folder.join("a.bin"), str) == folder.remote
    assert folder.exists() and folder.has("a.bin") and not folder.has("b.bin")
    assert folder.list_sizes() == {"a.bin": 21}
    with folder.open("a.bin") as f:
        assert f.read() == b"abc" * 7
    assert pickle.loads(pickle.dumps(folder)) == folder


def test_url_parsing():
    assert storage.is_url("s3://b/k") and storage.is_url("hf://datasets/x")
    assert storage.is_url("simplecache::s3://b/k")
    assert not storage.is_url("shards/webvid/train_4f") and not storage.is_url("/tmp/x")
    assert storage.scheme("simplecache::s3://b/k") == "s3"
    assert storage.scheme("HTTPS://host/x") == "https"
    assert storage.join("s3://b/p/", "webvid", "train_4f") == "s3://b/p/webvid/train_4f"
    assert storage.join("shards", "webvid") == Path("shards/webvid")
    assert storage.location("s3://b//k") == "s3://b//k"  # a URL is never folded by Path
    assert storage.location("a//b") == Path("a/b")
    assert storage.basename("s3://b/webvid/train_4f/") == "train_4f"
    assert storage.basename(Path("shards/webvid/train_4f")) == "train_4f"


@pytest.mark.parametrize("url", ["http://127.0.0.1:1/x", "https://h/x", "hf://datasets/a/b"])
def test_read_only_schemes_refuse_writes(tmp_path, url):
    src = tmp_path / "a.bin"
    src.write_bytes(b"x")
    with pytest.raises(UsageError, match="read-only"):
        storage.put_file(src, url)


def test_unknown_scheme_is_one_clear_error():
    with pytest.raises(UsageError, match=r"cannot open nosuchfs://b/k"):
        storage.size("nosuchfs://b/k")
