"""The visual retrieval report: parsed back with html.parser, and (slow) rendered by Chromium."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from t2v2t.data.schema import FORMAT, SampleMeta, encode_sample
from t2v2t.data.shards import info_dict, shard_dir, shard_name, write_manifest, write_shard
from t2v2t.retrieval.fusion import FUSIONS
from t2v2t.retrieval.html_report import TOP, pick_queries, write_html_report
from t2v2t.retrieval.metrics import best_ranks, retrieval_metrics
from t2v2t.retrieval.stats import retrieval_statistics

NV, FRAMES, SIZE = 8, 6, 40
EVIL = '<script>alert("x")</script> a \'red\' & "blue" square'
EVIL_KEY = "clip<i>&\"7'"


def _jpeg(v: int, f: int) -> bytes:
    img = np.zeros((SIZE, SIZE + 8, 3), np.uint8)
    img[..., v % 3] = 40 + 25 * v
    img[f * 5 : f * 5 + 8, 10:20] = 255  # a square that moves down, frame by frame
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _shards(root: Path) -> tuple[Path, list[str], list[str]]:
    out = shard_dir(root, "msrvtt", "test", FRAMES)
    out.mkdir(parents=True)
    keys = [f"video{v}" if v != 7 else EVIL_KEY for v in range(NV)]
    captions = [[f"caption of video {v}"] for v in range(NV)]
    captions[2] = [EVIL]
    samples = []
    for v in range(NV):
        meta = SampleMeta(
            key=keys[v], dataset="msrvtt", split="test", source=f"videos/{v}.mp4",
            captions=captions[v], fps=8.0, vlen=48, duration=6.0,
            frame_indices=[[8 * i + 4] for i in range(FRAMES)],
            sampling={"mode": "middle", "num_frames": FRAMES, "candidates": 1, "seed": 0},
            size=[SIZE, SIZE + 8],
        )  # fmt: skip
        samples.append(encode_sample(meta, [_jpeg(v, f) for f in range(FRAMES)]))
    infos = [
        write_shard(out / shard_name("msrvtt", "test", 0), samples[:3]),
        write_shard(out / shard_name("msrvtt", "test", 1), samples[3:]),
    ]
    write_manifest(out, {
        "format": FORMAT, "dataset": "msrvtt", "split": "test", "num_frames": FRAMES,
        "mode": "middle", "candidates": 1, "seed": 0, "short_side": SIZE, "jpeg_quality": 90,
        "num_samples": NV, "num_failed": 0, "shards": [info_dict(i) for i in infos],
        "created_with": {},
    })  # fmt: skip
    return out, keys, [c[0] for c in captions]


class _Report(HTMLParser):
    """Collects the query cards, their rows and cells, the strip CSS rules and the images."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: dict[int, dict] = {}
        self.images: list[str] = []
        self.style = ""
        self._stack: list[str] = []
        self._q = self._row = None
        self._in_caption = self._in_style = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            raise AssertionError("a <script> element in the report")
        if tag == "style":
            self._in_style = True
        if tag == "img":
            self.images.append(a["src"])
        if tag == "section" and "data-query" in a:
            self._q = {"caption": "", "rows": {}}
            self.queries[int(a["data-query"])] = self._q
        if tag == "p" and a.get("class") == "caption":
            self._in_caption = True
        if tag == "tr" and "data-fusion" in a and self._q is not None:
            self._row = {"rank": None, "cells": []}
            self._q["rows"][a["data-fusion"]] = self._row
        if tag == "span" and "data-rank" in a:
            self._row["rank"] = int(a["data-rank"])
        if tag == "td" and self._row is not None:
            self._row["cells"].append({"video": int(a["data-video"]), "gt": a.get("class") == "gt"})
        if tag == "span" and "strip" in (a.get("class") or "") and self._row is not None:
            m = re.search(r"\bv(\d+)\b", a["class"])
            self._row["cells"][-1]["strip"] = int(m.group(1)) if m else None

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False
        if tag == "p":
            self._in_caption = False
        if tag == "section":
            self._q = self._row = None

    def handle_data(self, data):
        if self._in_style:
            self.style += data
        if self._in_caption:
            self._q["caption"] += data


def _report(tmp_path: Path) -> tuple[Path, dict, list[str], list[str]]:
    shards, keys, captions = _shards(tmp_path / "shards")
    rng = np.random.default_rng(0)
    gt = [[v] for v in range(NV)]
    base = rng.normal(size=(NV, NV)) + 1.5 * np.eye(NV)
    other = base + rng.normal(scale=1.0, size=(NV, NV))  # disagrees with base on some top-1s
    mats = {"none": base, "naive": (base + other) / 2, "t2v2t": other}
    arrays = {f"t2v_{f}": m.astype(np.float32) for f, m in mats.items()}
    arrays.update(gt=np.array([[t, t] for t in range(NV)]), video_keys=np.array(keys))
    result = {
        "dataset": "msrvtt", "split": "test", "k": NV, "checkpoint": "ck<pt>.pt",
        "results": {f: retrieval_metrics(m, m.T, gt) for f, m in mats.items()},
        "statistics": retrieval_statistics({f: (m, m.T) for f, m in mats.items()}, gt),
        "shards": str(shards),
    }  # fmt: skip
    out = write_html_report(result, arrays, tmp_path / "msrvtt_test.html")
    return out, arrays, keys, captions


def test_report_lists_every_query_with_strips_ranks_and_escaped_text(tmp_path: Path) -> None:
    out, arrays, keys, captions = _report(tmp_path)
    text = out.read_text(encoding="utf-8")
    parser = _Report()
    parser.feed(text)
    listed, _ = pick_queries(arrays)
    disagree = [t for t, tags in listed if "disagree" in tags]
    assert disagree, "the fixture must have queries where the fusions disagree"
    assert sorted(parser.queries) == [t for t, _ in listed]
    gt = [[v] for v in range(8)]
    for t, card in parser.queries.items():
        assert card["caption"] == captions[t]  # html.parser unescapes: the text survives intact
        assert set(card["rows"]) == set(FUSIONS)
        for f, row in card["rows"].items():
            assert row["rank"] == best_ranks(arrays[f"t2v_{f}"], gt)[t]
            want = np.argsort(-arrays[f"t2v_{f}"][t], kind="stable")[:TOP].tolist()
            assert [c["video"] for c in row["cells"]] == want
            assert all(c["strip"] == c["video"] for c in row["cells"])  # a strip in every cell
            assert [c["gt"] for c in row["cells"]] == [v == t for v in want]
    # Every strip class used is defined once, with a JPEG that decodes.
    rules = dict(
        re.findall(
            r"\.v(\d+)\{background-image:url\(data:image/jpeg;base64,([^)]+)\)", parser.style
        )
    )
    used = {
        c["strip"] for q in parser.queries.values() for r in q["rows"].values() for c in r["cells"]
    }
    assert used <= {int(v) for v in rules}
    for b64 in rules.values():
        img = Image.open(io.BytesIO(base64.b64decode(b64)))
        assert img.format == "JPEG" and img.width > 3 * img.height  # 4 frames side by side
    assert len(parser.images) == 2
    for src in parser.images:
        head, b64 = src.split(",", 1)
        assert head == "data:image/png;base64"
        assert Image.open(io.BytesIO(base64.b64decode(b64))).format == "PNG"
    # Users' text is escaped: the raw markup never reaches the file.
    assert "<script>" not in text and "&lt;script&gt;alert(&quot;x&quot;)" in text
    assert "clip<i>" not in text and "clip&lt;i&gt;&amp;&quot;7&#x27;" in text
    assert "ck&lt;pt&gt;.pt" in text and "p=" in text and "Δ" in text


def test_report_without_shards_still_lists_the_queries(tmp_path: Path) -> None:
    out, arrays, _, _ = _report(tmp_path)
    shutil.rmtree(tmp_path / "shards")
    result = {"dataset": "msrvtt", "split": "test", "results": None}
    result["results"] = {f: {"t2v": {c: 0.0 for c in ("R1", "R5", "R10", "Avg")}} for f in FUSIONS}
    write_html_report(result, arrays, out, shard_dir=tmp_path / "shards")
    parser = _Report()
    parser.feed(out.read_text(encoding="utf-8"))
    assert len(parser.queries) == len(pick_queries(arrays)[0]) and "no frames" in out.read_text()


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium (Debian: apt-get install -y chromium)")
    out, _, _, _ = _report(tmp_path)
    shot = Path(__file__).resolve().parents[1] / "runs" / "html_report_screenshot.png"
    shot.parent.mkdir(exist_ok=True)
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
        "--window-size=1400,2000",
    ]  # fmt: skip
    proc = subprocess.run(
        [browser, *flags, out.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    img = Image.open(shot).convert("RGB")
    assert img.size == (1400, 2000)
    # Something was drawn: the page is not one flat colour.
    assert np.asarray(img).std() > 10
