"""``<dataset>_<split>.html``: what the model retrieves, in one self-contained file.

Opens from disk with no server: plots are inline base64 PNGs, each shown video's frame strip is
one base64 JPEG (defined once per video as a CSS class, however often the video appears). It
holds the recall@K curves of the three fusions (with 95% bootstrap bands), the text->video
figures with their intervals and paired tests, the distribution of the ground truth's rank
change (T2V2T vs VindLU), and, for every query where the fusions disagree on the top 1 plus a
random sample, the top 5 videos under each fusion and the ground truth's rank under each.
Captions and keys are users' data: every one is escaped.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from t2v2t.data.eval_loader import eval_texts
from t2v2t.data.schema import decode_sample
from t2v2t.data.shards import ShardError, read_manifest, read_shard, shard_infos
from t2v2t.retrieval.fusion import FUSIONS
from t2v2t.retrieval.metrics import best_ranks
from t2v2t.retrieval.plots import draw_recall_at_k
from t2v2t.retrieval.report import FUSION_LABELS as LABELS
from t2v2t.retrieval.report import method_label
from t2v2t.retrieval.stats import fmt_interval, fmt_p
from t2v2t.storage import ShardFolder

TOP = 5
SAMPLE = 12  # random queries shown besides the disagreements
MAX_LISTED = 400  # disagreements shown at most (the file stays a few MB)
STRIP_FRAMES = 4
THUMB_HEIGHT = 56
STRIP_WIDTH = 200  # CSS pixels


def html_name(dataset: str, split: str) -> str:
    return f"{dataset}_{split}.html"


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _figure(figsize: tuple[float, float]) -> tuple[Any, Any]:
    # matplotlib loads only when a report is drawn; a bare Figure needs no pyplot backend.
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def load_strips(
    shard_dir: str | Path,
    videos: Sequence[int],
    *,
    frames: int = STRIP_FRAMES,
    height: int = THUMB_HEIGHT,
) -> dict[int, tuple[bytes, int, int]]:
    """Manifest position -> (JPEG of ``frames`` evenly spaced stored frames side by side, width,
    height), read from the eval shards; only the wanted samples are decoded."""
    directory = ShardFolder.of(shard_dir)  # a URL stays one
    wanted = set(int(v) for v in videos)
    out: dict[int, tuple[bytes, int, int]] = {}
    offset = 0
    for info in shard_infos(read_manifest(directory)):
        local = {v - offset for v in wanted if offset <= v < offset + info.samples}
        if local:
            samples = read_shard(directory, info.name, keep=local.__contains__)
            for i, sample in enumerate(samples):
                if sample.get("__skipped__"):
                    continue
                _, jpegs = decode_sample(sample)
                picks = np.linspace(0, len(jpegs) - 1, min(frames, len(jpegs))).round().astype(int)
                thumbs = []
                for p in picks:
                    img = Image.open(io.BytesIO(jpegs[p])).convert("RGB")
                    w = max(1, round(img.width * height / img.height))
                    thumbs.append(img.resize((w, height), Image.BILINEAR))
                strip = Image.new("RGB", (sum(t.width for t in thumbs) + len(thumbs) - 1, height))
                x = 0
                for t in thumbs:
                    strip.paste(t, (x, 0))
                    x += t.width + 1  # a 1-pixel black gap between frames
                buf = io.BytesIO()
                strip.save(buf, format="JPEG", quality=80)
                out[offset + i] = (buf.getvalue(), strip.width, strip.height)
        offset += info.samples
    return out


def _recall_plot(ranks: Mapping[str, np.ndarray], num_videos: int) -> str:
    fig, ax = _figure((6.0, 3.6))
    draw_recall_at_k(ax, ranks, num_videos)
    ax.set_title("text→video recall@K (bands: 95% bootstrap)")
    fig.tight_layout()
    uri = _png(fig)
    return uri


def _rank_change_plot(before: np.ndarray, after: np.ndarray) -> str:
    change = before - after  # > 0: T2V2T ranks the ground truth higher than VindLU
    clip = 20
    shown = np.clip(change, -clip, clip)
    fig, ax = _figure((6.0, 3.6))
    ax.hist(shown, bins=np.arange(-clip - 0.5, clip + 1.5, 1.0), color="tab:purple")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel(f"VindLU rank − T2V2T rank (clipped to ±{clip}; > 0: T2V2T better)")
    ax.set_ylabel("queries")
    ax.set_title(
        f"better {int((change > 0).sum())}, same {int((change == 0).sum())}, "
        f"worse {int((change < 0).sum())}"
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    uri = _png(fig)
    return uri


def _stats_table(result: Mapping[str, Any]) -> str:
    stats = (result.get("statistics") or {}).get("t2v")
    cols = ("R1", "R5", "R10", "Avg")
    rows = []
    for name in FUSIONS:
        m = result["results"][name]["t2v"]
        cells = []
        for c in cols:
            ci = stats["intervals"][name][c] if stats else None
            cells.append(
                f"<td>{m[c]:.1f}" + (f" <small>{fmt_interval(ci)}</small>" if ci else "") + "</td>"
            )
        for c in cols:
            test = stats["paired"].get(name, {}).get(c) if stats else None
            cells.append(
                f"<td>{test['diff']:+.1f} <small>{fmt_interval(test['ci'])} "
                f"p={fmt_p(test['p'])}</small></td>"
                if test
                else "<td>–</td>"
            )
        rows.append(f"<tr><th>{LABELS[name]}</th>{''.join(cells)}</tr>")
    head = "".join(f"<th>{c}</th>" for c in cols) + "".join(
        f"<th>Δ{c} vs VindLU</th>" for c in cols
    )
    method = (result.get("statistics") or {}).get("method")
    note = (
        f"<p class='note'>[lo, hi]: {100 * method['level']:.0f}% {_esc(method['interval'])} "
        f"({method['resamples']} resamples, seed {method['seed']}); Δ: {_esc(method['difference_interval'])}; "
        f"p: {_esc(method['paired_test'])}. An interval of Δ that holds 0: these queries do not "
        "separate the fusions.</p>"
        if method
        else ""
    )
    return f"<table class='stats'><tr><th></th>{head}</tr>{''.join(rows)}</table>{note}"


def _method_cell(row: Mapping[str, Any] | None) -> str:
    if not row or "metrics" not in row:
        why = (row or {}).get("skipped", "")
        return f"<td title='{_esc(why)}'>–</td>"
    ci = (row.get("interval") or {}).get("R1")
    cell = f"<td>{row['metrics']['R1']:.1f}" + (f" <small>{fmt_interval(ci)}</small>" if ci else "")
    test = (row.get("vs_none") or {}).get("R1")
    if test:
        cell += (
            f"<br>{test['diff']:+.1f} <small>{fmt_interval(test['ci'])} p={fmt_p(test['p'])} "
            f"Holm {fmt_p(test['p_holm'])}</small>"
        )
    return cell + "</td>"


def posthoc_html(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Every post-hoc method x dataset (``results``: dataset -> evaluation JSON): its label, and
    per protocol text->video R@1 with its 95% interval, the paired difference vs none with its
    interval, sign-flip p and Holm-corrected p; on the stage-1 scores, then over the re-ranked
    candidate logits where the results carry them. Empty without a ``posthoc`` section."""
    present = {d: r["posthoc"] for d, r in results.items() if r.get("posthoc")}
    if not present:
        return ""
    parts = []
    for title, pick in (
        ("on the stage-1 scores", lambda post: post.get("protocols")),
        ("on the re-ranked candidate logits", lambda post: (post.get("reranked") or {}).get(
            "protocols")),
    ):  # fmt: skip
        tables = {d: pick(post) for d, post in present.items() if pick(post)}
        if not tables:
            continue
        cols = [(d, p) for d, t in tables.items() for p in t]
        head = "".join(f"<th>{_esc(d)} {_esc(p)}</th>" for d, p in cols)
        first = next(iter(tables.values()))
        methods = first[next(iter(first))]["t2v"]
        rows = []
        for m in methods:
            cells = "".join(_method_cell(tables[d][p]["t2v"].get(m)) for d, p in cols)
            label = method_label(m, {d: t[next(iter(t))]["t2v"] for d, t in tables.items()})
            rows.append(f"<tr data-method='{_esc(m)}'><th>{_esc(m)}</th><td>{_esc(label)}"
                        f"</td>{cells}</tr>")  # fmt: skip
        parts.append(
            f"<h3>Every post-hoc method {title}</h3><table class='stats posthoc'><tr><th>method"
            f"</th><th>label</th>{head}</tr>{''.join(rows)}</table>"
        )
    note = (
        "<p class='note'>Text→video R@1 [95% bootstrap interval]; below it the difference vs none "
        "[paired interval], the sign-flip p and the Holm-corrected p across the methods of the "
        "table. single: each query scored alone with the bank (transductive methods: –). "
        'docs/evaluation.md, "Which fusion?".</p>'
    )
    return "".join(parts) + note


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:20px;
 color:#222;max-width:1360px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:24px 0 8px;border-bottom:1px solid #ddd}
.meta,.note{color:#555;font-size:13px} .plots{display:flex;flex-wrap:wrap;gap:12px}
.plots img{border:1px solid #ddd;max-width:100%}
table.stats{border-collapse:collapse;font-size:13px} table.stats td,table.stats th{
 border:1px solid #ddd;padding:3px 6px;text-align:right} table.stats small{color:#666}
.query{border:1px solid #ddd;border-radius:6px;padding:8px 10px;margin:10px 0;background:#fafafa}
.query h3{font-size:14px;margin:0 0 4px} .caption{font-size:15px;margin:2px 0 6px;
 overflow-wrap:anywhere} .tag{font-size:11px;background:#e6e0f5;border-radius:3px;padding:1px 5px;
 margin-left:6px} .tag.sample{background:#e0eef5}
table.tops{border-collapse:collapse} table.tops th{text-align:left;font-size:12px;
 padding:2px 8px 2px 0;width:110px;vertical-align:top} table.tops td{padding:2px 4px;
 vertical-align:top;width:212px}
.rank{font-weight:normal;color:#444} .strip{display:block;background-size:100% 100%;
 border:2px solid transparent;background-color:#ccc} td.gt .strip{border-color:#1a9c3a}
.key{font-size:11px;color:#555;overflow-wrap:anywhere;max-width:204px}
td.gt .key{color:#1a9c3a;font-weight:bold} .nostrip{width:200px;height:48px;display:flex;
 align-items:center;justify-content:center;font-size:11px;color:#666}
"""


def build_html(
    result: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    gt: Sequence[Sequence[int]],
    *,
    texts: Sequence[str] | None = None,
    strips: Mapping[int, tuple[bytes, int, int]] | None = None,
    listed: Sequence[tuple[int, list[str]]] | None = None,
    note: str = "",
) -> str:
    """The report as one HTML string (``listed``: (query, tags) pairs, default
    :func:`pick_queries`)."""
    strips = strips or {}
    keys = [str(k) for k in arrays["video_keys"]]
    num_texts, num_videos = arrays["t2v_none"].shape
    ranks = {f: best_ranks(arrays[f"t2v_{f}"], gt) for f in FUSIONS}
    if listed is None:
        listed, note = pick_queries(arrays)
    title = f"{result.get('dataset', '?')} {result.get('split', '?')}: text→video retrieval"
    rules = []
    for v, (jpeg, w, h) in sorted(strips.items()):
        uri = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
        # Shown at most STRIP_WIDTH wide: five strips and the label fit a 1400-pixel window.
        dw = min(w, STRIP_WIDTH)
        dh = max(1, round(h * dw / w))
        rules.append(f".v{v}{{background-image:url({uri});width:{dw}px;height:{dh}px}}")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_esc(title)}</title><style>{CSS}</style>",
        f"<style id='strips'>{''.join(rules)}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f"<p class='meta'>{num_texts} texts × {num_videos} videos, k = {_esc(result.get('k'))}, "
        f"checkpoint <code>{_esc(result.get('checkpoint'))}</code>, shards "
        f"<code>{_esc(result.get('shards'))}</code>.</p>",
        "<h2>Recall and its uncertainty</h2>",
        _stats_table(result),
        posthoc_html({str(result.get("dataset", "?")): result}),
        "<div class='plots'>",
        f"<img alt='recall at K' src='{_recall_plot(ranks, num_videos)}'>",
        f"<img alt='rank change' src='{_rank_change_plot(ranks['none'], ranks['t2v2t'])}'>",
        "</div>",
        f"<h2>Queries ({len(listed)} shown)</h2>",
        f"<p class='note'>Top {TOP} videos under each fusion, {STRIP_FRAMES} frames each; the "
        f"ground truth is framed in green. {_esc(note)}</p>",
    ]
    for t, tags in listed:
        caption = texts[t] if texts is not None else f"text #{t}"
        gts = ", ".join(_esc(keys[v]) for v in gt[t])
        tag_html = "".join(f"<span class='tag {_esc(tag)}'>{_esc(tag)}</span>" for tag in tags)
        rows = []
        for f in FUSIONS:
            order = np.argsort(-arrays[f"t2v_{f}"][t], kind="stable")[:TOP]
            cells = []
            for v in order.tolist():
                hit = " class='gt'" if v in gt[t] else ""
                strip = (
                    f"<span class='strip v{v}' role='img' aria-label='{_esc(keys[v])}'></span>"
                    if v in strips
                    else "<span class='strip nostrip'>no frames</span>"
                )
                cells.append(
                    f"<td{hit} data-video='{v}'>{strip}<div class='key'>{_esc(keys[v])}</div></td>"
                )
            rows.append(
                f"<tr data-fusion='{f}'><th>{LABELS[f]}<br><span class='rank' data-rank="
                f"'{int(ranks[f][t])}'>GT rank {int(ranks[f][t])}</span></th>{''.join(cells)}</tr>"
            )
        parts.append(
            f"<section class='query' data-query='{t}'><h3>query {t}{tag_html}</h3>"
            f"<p class='caption'>{_esc(caption)}</p>"
            f"<p class='meta'>ground truth: <code>{gts}</code></p>"
            f"<table class='tops'>{''.join(rows)}</table></section>"
        )
    parts.append("</body></html>\n")
    return "".join(parts)


def pick_queries(
    arrays: Mapping[str, np.ndarray], *, sample: int = SAMPLE, seed: int = 0
) -> tuple[list[tuple[int, list[str]]], str]:
    """Every query whose top 1 differs between fusions (up to :data:`MAX_LISTED`), plus a fixed
    random sample; returns (query, tags) sorted by query, and a note on what was left out."""
    num_texts = arrays["t2v_none"].shape[0]
    top1 = np.stack([np.argmax(arrays[f"t2v_{f}"], axis=1) for f in FUSIONS])  # first max = stable
    disagree = np.nonzero((top1 != top1[0]).any(axis=0))[0].tolist()
    note = f"{len(disagree)} queries where the fusions disagree on the top 1"
    if len(disagree) > MAX_LISTED:
        note += f" (the first {MAX_LISTED} shown)"
        disagree = disagree[:MAX_LISTED]
    rng = np.random.default_rng(seed)
    picked = rng.choice(num_texts, size=min(sample, num_texts), replace=False).tolist()
    tags: dict[int, list[str]] = {t: ["disagree"] for t in disagree}
    for t in picked:
        tags.setdefault(t, []).append("sample")
    note += f"; {len(picked)} random queries (seed {seed})."
    return sorted(tags.items()), note


def write_html_report(
    result: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    out_path: str | Path,
    *,
    shard_dir: str | Path | None = None,
    texts: Sequence[str] | None = None,
) -> Path:
    """Write the report; thumbnails come from ``shard_dir`` (default the result's ``shards``),
    captions from ``texts`` (an evaluation's, e.g. ``EvalResult.texts``) or else the shards.
    Without readable shards it still writes, with "no frames" in place of strips."""
    gt: list[list[int]] = [[] for _ in range(arrays["t2v_none"].shape[0])]
    for t, v in np.asarray(arrays["gt"]).reshape(-1, 2).tolist():
        gt[t].append(v)
    listed, note = pick_queries(arrays)
    shard_dir = shard_dir or result.get("shards")
    texts = None if texts is None else list(texts)
    strips: dict[int, tuple[bytes, int, int]] = {}
    if shard_dir:
        try:
            if texts is None:
                texts = eval_texts(shard_dir).texts
            shown = {
                int(v)
                for t, _ in listed
                for f in FUSIONS
                for v in np.argsort(-arrays[f"t2v_{f}"][t], kind="stable")[:TOP]
            }
            strips = load_strips(shard_dir, sorted(shown))
        except (ShardError, OSError, ValueError) as err:
            note += f" Frames unavailable: {err}"
            texts = texts if texts is not None and len(texts) == len(gt) else None
    if texts is not None and len(texts) != len(gt):
        texts = None  # not the shards these scores came from
    out = Path(out_path)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(
        build_html(result, arrays, gt, texts=texts, strips=strips, listed=listed, note=note),
        encoding="utf-8",
    )
    tmp.replace(out)
    return out


def write_ablation_html(results: Mapping[str, Mapping[str, Any]], out_path: str | Path) -> Path:
    """``ablation.html``: the every-method x dataset tables of :func:`posthoc_html` in one
    self-contained page (``make ablation``)."""
    out = Path(out_path)
    body = posthoc_html(results) or "<p>No evaluation carries the post-hoc section.</p>"
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Ablation: every "
        f"post-hoc method</title><style>{CSS}</style></head><body><h1>Ablation: every post-hoc "
        f"method x dataset</h1>{body}</body></html>\n",
        encoding="utf-8",
    )
    tmp.replace(out)
    return out
