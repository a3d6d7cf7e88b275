"""One input of the shard builder: a video (or image) with its captions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class VideoRecord:
    """What an adapter yields for one video.

    ``key`` is the stable tar-safe id, ``media`` the file to decode, ``source`` the media path
    relative to the data root (what the shard metadata stores, so moving the data changes
    nothing). Paragraph datasets carry one caption (the paragraph) and its sentences' timestamps.
    ``refused`` is the reason an adapter will not let the builder open the media at all (a path
    that leaves the data folder): such a record goes straight to ``failures.jsonl``.
    """

    key: str
    media: Path
    source: str
    captions: list[str]
    timestamps: list[list[float]] | None = None
    is_image: bool = False
    refused: str | None = None
    # (byte offset, size) of the media inside ``media`` when that is an input tar (webdataset
    # input, preprocessing/wds_input.py); None: ``media`` is the file itself.
    member: tuple[int, int] | None = None
