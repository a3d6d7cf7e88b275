"""``scripts/build_shards.py`` whose Nth shard upload stops halfway, for the SIGKILL test.

``KILL_AT_UPLOAD=N``: the Nth shard upload sends its request headers and half the shard's bytes
to the S3 endpoint (``AWS_ENDPOINT_URL``) over a raw connection, writes ``KILL_FLAG`` (a file
the test waits for) and blocks, so the test kills the build while an upload is in flight, at
the same point every time. Every other upload is the real one.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import build_shards  # noqa: E402

from preprocessing import publish  # noqa: E402

real_put = publish.put_file
uploads = 0


def hang_mid_upload(local: Path, url: str) -> None:
    """Send half of ``local`` as the body of an S3 PUT of ``url``, then wait to be killed."""
    endpoint = urlparse(os.environ["AWS_ENDPOINT_URL"])
    bucket, _, key = url.removeprefix("s3://").partition("/")
    body = Path(local).read_bytes()
    sock = socket.create_connection((endpoint.hostname, endpoint.port))
    head = f"PUT /{bucket}/{key} HTTP/1.1\r\nHost: {endpoint.netloc}\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body[: len(body) // 2])
    Path(os.environ["KILL_FLAG"]).write_text(url)
    threading.Event().wait()


def put_file(local: Path, url: str) -> None:
    global uploads
    if url.endswith(".tar.zst"):
        uploads += 1
        if uploads == int(os.environ["KILL_AT_UPLOAD"]):
            hang_mid_upload(local, url)
    real_put(local, url)


publish.put_file = put_file

if __name__ == "__main__":
    sys.exit(build_shards.cli(build_shards.main))
