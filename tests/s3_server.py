"""A real S3 server on 127.0.0.1 for the object-storage tests: moto's standalone server
(``moto_server`` from the venv), talked to over HTTP by s3fs/botocore exactly as a lab's S3 or
MinIO would be. docs/storage.md, "Object storage".

The session fixture ``s3_server`` starts it on a free port, waits until it answers, points the
libraries' usual environment at it (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``; subprocesses inherit it), creates the bucket
``S3Server.bucket`` and stops the server after the session. The function fixture ``s3_url``
gives each test its own prefix in that bucket.

Every request the server answers is logged (werkzeug's access log) to ``S3Server.log_path``;
:meth:`S3Server.object_gets` counts the GETs of one object from that log, so a test can count
fetches without trusting the code under test.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BUCKET = "t2v2t-test"
ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
START_TIMEOUT_S = 60.0
# werkzeug: 127.0.0.1 - - [date] "GET /bucket/key?x HTTP/1.1" 200 -
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LOG_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})')


@dataclass
class S3Server:
    endpoint: str
    bucket: str
    log_path: Path

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path without the query, status) for every request answered so far."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            m = _LOG_LINE.search(_ANSI.sub("", line))  # werkzeug colours 206 (ranged) lines
            if m:
                out.append((m["method"], m["path"].split("?", 1)[0], int(m["status"])))
        return out

    def object_gets(self, url: str) -> int:
        """How many successful GETs of the object at ``s3://bucket/key`` the server answered."""
        path = "/" + url.removeprefix("s3://")
        return sum(1 for m, p, s in self.requests() if m == "GET" and p == path and s < 300)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(endpoint: str, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited {proc.returncode}: {log_path.read_text()}")
        try:
            with urllib.request.urlopen(endpoint + "/moto-api/", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise RuntimeError(f"moto_server did not answer on {endpoint} in {START_TIMEOUT_S:.0f} s")


def _moto_server_bin() -> str:
    exe = Path(sys.executable).parent / "moto_server"
    if not exe.exists():
        pytest.skip(f"{exe} not found: install the dev extras (make setup)")
    return str(exe)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    exe = _moto_server_bin()
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "server.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    saved = {k: os.environ.get(k) for k in [*ENV, "AWS_ENDPOINT_URL"]}
    try:
        _wait_until_up(endpoint, proc, log_path)
        os.environ.update(ENV, AWS_ENDPOINT_URL=endpoint)
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield S3Server(endpoint=endpoint, bucket=BUCKET, log_path=log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_url(s3_server: S3Server, request: pytest.FixtureRequest) -> str:
    """A prefix of the test bucket no other test uses: ``s3://t2v2t-test/<module>-<test>``."""
    raw = f"{request.node.path.stem}-{request.node.name}"
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-")
    return f"s3://{s3_server.bucket}/{name}"
