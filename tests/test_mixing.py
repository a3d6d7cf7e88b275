"""Global mixing at build time (docs/data.md, "Mixing"): the rule, the slices, batch locality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_driver import TRICKY  # the driver tests' awkward CSV (quotes, blank and CRLF lines)

from preprocessing.adapters import webvid, webvid_slice
from preprocessing.mixing import block_order, block_rows, mix_list, mixed_rows
from preprocessing.recipes import SplitRecipe
from preprocessing.slices import CsvSource, plan_parts, slice_records
from preprocessing.spec import ShardSpec
from preprocessing.wds_input import TarSource
from t2v2t.errors import UsageError
from t2v2t.shards import mixing_for
from t2v2t.tools.locality import (
    batch_locality,
    epoch_batches,
    shard_rows,
    uniform_batches,
    uniform_locality,
)


def _written_out(num_rows: int, n: int, seed: int) -> list[int]:
    """The rule, written out: blocks of max(1, n // 256) consecutive rows (the last may be
    short), laid end to end in the seeded block order; shards cut that sequence every n."""
    m = max(1, n // 256)
    blocks = [list(range(b, min(b + m, num_rows))) for b in range(0, num_rows, m)]
    return [r for b in block_order(len(blocks), seed) for r in blocks[int(b)]]


@pytest.mark.parametrize(("num_rows", "n"), [(1, 1), (10, 3), (3000, 600), (5000, 2600)])
def test_mixed_rows_is_the_written_rule_and_a_permutation(num_rows: int, n: int) -> None:
    got = mixed_rows(num_rows, n, seed=3).tolist()
    assert got == _written_out(num_rows, n, 3)
    assert sorted(got) == list(range(num_rows))
    assert block_rows(n) == max(1, n // 256)
    if num_rows >= 3000:
        assert got != mixed_rows(num_rows, n, seed=4).tolist()  # the seed decides the order
        # Every shard gathers rows from all over the file, not a neighbourhood.
        for lo in range(0, num_rows, n):
            part = got[lo : lo + n]
            assert max(part) - min(part) > num_rows // 2
    assert mix_list([f"r{i}" for i in range(num_rows)], n, 3) == [f"r{i}" for i in got]


def test_mixed_slices_read_every_row_once_in_mixed_order(tmp_path: Path) -> None:
    csv = tmp_path / "results_10M_train.csv"
    csv.write_bytes(TRICKY.encode())
    source = CsvSource(webvid_slice, str(tmp_path), str(csv))
    full = webvid(tmp_path, "train", csv)
    for n in (1, 2, 4, 100):
        parts = list(plan_parts(source, n, "blocks", seed=0))
        assert [p.rows for p in parts][:-1] == [n] * (len(parts) - 1)
        got = [r for p in parts for r in slice_records(source, p)]
        assert got == [full[i] for i in mixed_rows(len(full), n, 0)], n  # lines kept too
    # Bigger files: blocks of 2 rows (the last one short in the second file, wherever the seed
    # puts it); a shard's runs are whole blocks except at its ends.
    for num_rows, seed in ((1500, 0), (1501, 0), (1501, 1), (1501, 2)):
        with open(csv, "w", encoding="utf-8") as f:
            f.write("videoid,contentUrl,duration,page_dir,name\n")
            for i in range(num_rows):
                f.write(f'{i},u,PT1S,p{i % 7},"row, {i}"\n')
        full = webvid(tmp_path, "train", csv)
        parts = list(plan_parts(source, 600, "blocks", seed=seed))
        assert [p.rows for p in parts] == [600, 600, num_rows - 1200] and block_rows(600) == 2
        assert all(len(p.runs) <= 302 for p in parts)
        got = [r.key for p in parts for r in slice_records(source, p)]
        assert got == [full[i].key for i in mixed_rows(num_rows, 600, seed)], (num_rows, seed)


def test_spec_records_mixing_and_the_cli_default(tmp_path: Path) -> None:
    spec = ShardSpec("webvid", "train", 4, "rand", 2, samples_per_shard=600, mixing="blocks")
    fields = spec.manifest_fields()
    assert (fields["mixing"], fields["mixing_block_rows"]) == ("blocks", 2)
    assert ShardSpec.from_manifest({**fields, "shards": []}) == spec
    old = {k: v for k, v in fields.items() if not k.startswith("mixing")}
    assert ShardSpec.from_manifest({**old, "shards": []}).mixing == "none"  # older manifests
    with pytest.raises(UsageError, match=r"unknown mixing \(MIXING=rows\)"):
        ShardSpec("webvid", "train", 4, "rand", 2, mixing="rows")
    csv = CsvSource(webvid_slice, str(tmp_path), str(tmp_path / "a.csv"))
    train, test = SplitRecipe("train", 4, "rand", 2), SplitRecipe("test", 12, "middle", 1)
    assert mixing_for(None, train, csv) == "blocks"  # WebVid's CSV at scale: mixed
    assert mixing_for(None, test, csv) == "none"  # evaluation keeps the annotation order
    assert mixing_for(None, train, []) == "none" and mixing_for("blocks", train, []) == "blocks"
    assert mixing_for("none", train, csv) == "none"
    assert mixing_for(None, train, TarSource("webvid", str(tmp_path), str(tmp_path))) == "blocks"


def test_batch_locality_of_todays_loader_mixed_shards_and_a_permutation() -> None:
    # The figure on hand-made batches: rows 0 and 1 are within 1% of 1000 rows, no other pair.
    assert batch_locality(np.array([[999, 0, 500, 1]]), 1000) == pytest.approx(1 / 6)
    assert batch_locality(np.array([[5, 15], [5, 16]]), 1000) == 0.5
    # The plan simulated at 200k rows, shards of WebVid's default size (1323 samples at 300 MB),
    # 8 ranks, batches of 64 (the paper's per-GPU batch), the 1000-sample buffer.
    n, rows = 1323, 200_000
    figures = {}
    for mixing in ("none", "blocks"):
        batches = epoch_batches(
            shard_rows(rows, n, mixing), n, batch_size=64, world_size=8, ranks=2
        )
        figures[mixing] = batch_locality(np.concatenate(batches), rows)
    uniform = batch_locality(uniform_batches(rows, 64, 780), rows)
    assert uniform == pytest.approx(uniform_locality(), rel=0.1)
    assert figures["none"] > 10 * uniform  # today: batches of neighbouring rows
    assert figures["blocks"] <= 1.5 * uniform  # the goal
