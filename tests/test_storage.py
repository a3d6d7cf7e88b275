"""Object storage through fsspec (t2v2t.storage) against a real S3 server on 127.0.0.1
(tests/s3_server.py). README.md, "Object storage"."""

from __future__ import annotations

import boto3


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
