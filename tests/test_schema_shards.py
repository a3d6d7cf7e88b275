"""Round trip of the sample schema through a real tar+zstd shard."""

from __future__ import annotations

import io
import subprocess
import tarfile

import pytest
import zstandard

from t2v2t.data.schema import SampleMeta, decode_sample, encode_sample, safe_key
from t2v2t.data.shards import ShardError, check_shard_file, iter_samples, read_manifest, write_shard


def _meta(key: str, n: int) -> SampleMeta:
    return SampleMeta(
        key=key, dataset="webvid", split="train", source=f"videos/{key}.mp4",
        captions=["a red circle moves left", "ünïcode, \"quotes\""], fps=25.0, vlen=100,
        duration=4.0, frame_indices=[[i * 10, i * 10 + 1] for i in range(n)],
        sampling={"mode": "rand", "num_frames": n, "candidates": 2, "seed": 0}, size=[224, 298],
        timestamps=[[0.0, 1.5]],
    )  # fmt: skip


def test_round_trip_and_determinism(tmp_path) -> None:
    samples = [
        encode_sample(_meta(f"k{i}", 2), [bytes([i, j]) * 50 for j in range(4)]) for i in range(3)
    ]
    a = write_shard(tmp_path / "a.tar.zst", samples)
    b = write_shard(tmp_path / "b.tar.zst", samples)
    assert a.sha256 == b.sha256 and a.samples == 3
    got = list(iter_samples(tmp_path / "a.tar.zst"))
    assert [g["__key__"] for g in got] == ["k0", "k1", "k2"]
    meta, jpegs = decode_sample(got[1])
    assert meta == _meta("k1", 2) and jpegs == [bytes([1, j]) * 50 for j in range(4)]
    # The zstd command line and tar agree.
    listing = subprocess.run(
        f"zstd -dc {tmp_path / 'a.tar.zst'} | tar t",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert listing[:5] == ["k0.json", "k0.000.jpg", "k0.001.jpg", "k0.002.jpg", "k0.003.jpg"]
    assert not list(tmp_path.glob(".*tmp"))


def test_encode_rejects_wrong_frame_count() -> None:
    with pytest.raises(ValueError, match="frames given"):
        encode_sample(_meta("k", 2), [b"x"])


def test_safe_key() -> None:
    assert (
        safe_key("10003403@N07_2974829043_e9c1e92c58.mov")
        == "10003403_N07_2974829043_e9c1e92c58_mov"
    )
    assert safe_key("a/b.c") == "a_b_c"


def test_manifest_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(ShardError, match="manifest.json not found"):
        read_manifest(tmp_path)
    info = write_shard(tmp_path / "s.tar.zst", [encode_sample(_meta("k", 1), [b"a", b"b"])])
    data = (tmp_path / "s.tar.zst").read_bytes()
    (tmp_path / "s.tar.zst").write_bytes(data[:-10])
    with pytest.raises(ShardError, match="s.tar.zst.*truncated"):
        check_shard_file(tmp_path, info)


def test_plain_tarfile_reads_through_zstd(tmp_path) -> None:
    write_shard(tmp_path / "s.tar.zst", [encode_sample(_meta("k", 1), [b"a", b"b"])])
    raw = (
        zstandard.ZstdDecompressor()
        .decompressobj()
        .decompress((tmp_path / "s.tar.zst").read_bytes())
    )
    names = tarfile.open(fileobj=io.BytesIO(raw)).getnames()
    assert names == ["k.json", "k.000.jpg", "k.001.jpg"]
