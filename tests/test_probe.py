"""The attribute probe (t2v2t/tools/probe.py, scripts/probe_attribute.py) on small hand-made
shards whose clips show a known colour: it reads the shards, labels each clip from the attribute
file, and learns the colour; wrong inputs fail with one line naming the file."""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path

import pytest
import torch
from train_shards import COLOURS, make_train_shards

from t2v2t.models import build_model
from t2v2t.tools.benchlog import EXPERIMENTS
from t2v2t.tools.probe import attribute_of, load_clips

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32


def _script():
    spec = importlib.util.spec_from_file_location(
        "_probe_attribute", ROOT / "scripts" / "probe_attribute.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``toy/train_4f`` (48 clips) and ``toy/test_4f`` (24), the attribute file that names each
    clip's top colour (train_shards: clip i's top half is colour i mod 8), and a checkpoint of
    a small random tiny-preset model."""
    root = tmp_path_factory.mktemp("probe")
    make_train_shards(root, split="train", num_samples=48, size=SIZE)
    make_train_shards(root, split="test", num_samples=24, size=SIZE)
    names = list(COLOURS)
    attrs = {f"toy_{i:04d}": {"colour": names[i % 8], "direction": "left"} for i in range(48)}
    (root / "attributes.json").write_text(json.dumps(attrs))
    (root / "other.json").write_text(json.dumps({"someone_else_0000": {"colour": "red"}}))
    torch.manual_seed(0)
    model = build_model("tiny", "random", overrides={"image_size": SIZE, "vision_depth": 2})
    ckpt = root / "model.pt"
    torch.save(
        {"model": model.state_dict(), "preset": "tiny", "model_config": model.config.to_dict()},
        ckpt,
    )
    return {"shards": root / "toy", "attributes": root / "attributes.json",
            "other": root / "other.json", "ckpt": ckpt}  # fmt: skip


def test_load_clips_labels_every_clip_from_the_attribute_file(corpus: dict[str, Path]) -> None:
    train = load_clips(corpus["shards"] / "train_4f", corpus["attributes"], "colour",
                       num_frames=4, image_size=SIZE)  # fmt: skip
    assert train.frames.shape == (48, 4, 3, SIZE, SIZE) and train.frames.dtype == torch.uint8
    assert train.classes == sorted(COLOURS)
    names = list(COLOURS)
    expect = [train.classes.index(names[i % 8]) for i in range(48)]
    assert train.labels.tolist() == expect
    # The clip's top rows really are its labelled colour (the labels follow the clips, not the
    # loader's order by chance).
    top = train.frames[:, 0, :, 2, SIZE // 2].float()
    for i in (0, 9, 47):
        want = torch.tensor(COLOURS[train.classes[expect[i]]], dtype=torch.float32)
        assert (top[i] - want).abs().max() < 40, (i, top[i], want)
    # The test split is labelled in the training classes' order; a class training never saw
    # is refused by name.
    order = train.classes[::-1]
    test = load_clips(corpus["shards"] / "test_4f", corpus["attributes"], "colour",
                      num_frames=4, image_size=SIZE, classes=order)  # fmt: skip
    assert test.classes == order
    assert test.labels.tolist() == [order.index(names[i % 8]) for i in range(24)]
    with pytest.raises(ValueError, match=r"colour values \['yellow'\] never seen in training"):
        load_clips(corpus["shards"] / "test_4f", corpus["attributes"], "colour", num_frames=4,
                   image_size=SIZE, classes=[c for c in order if c != "yellow"])  # fmt: skip


def test_probe_input_errors_name_what_is_wrong(corpus: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="unknown attribute 'hue'"):
        load_clips(corpus["shards"] / "nope", corpus["attributes"], "hue",
                   num_frames=4, image_size=SIZE)  # fmt: skip
    with pytest.raises(ValueError, match="has 2 events"):
        attribute_of({"events": [{"colour": "red"}, {"colour": "blue"}]}, "colour", "a.json: k")
    assert attribute_of({"events": [{"colour": "red"}]}, "colour", "x") == "red"
    assert attribute_of({"colour": "blue"}, "colour", "x") == "blue"


@pytest.mark.parametrize(
    ("mode", "steps"), [("frozen", 60), ("train-encoder", 10)], ids=["frozen", "trained"]
)
def test_probe_cli_learns_colour_from_a_checkpoint(
    corpus: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, mode: str, steps: int
) -> None:
    # Colour is readable frame by frame, so even a random encoder's features give it away:
    # measured 0.71 (frozen, 60 steps) and 0.75 (trained, 10 steps) against 0.125.
    out = tmp_path / "probe.json"
    half = steps // 2
    rc = _script().main([
        "--ckpt", str(corpus["ckpt"]), "--shards", str(corpus["shards"]),
        "--attributes", str(corpus["attributes"]), "--attribute", "colour", "--threads", "1",
        "--steps", str(steps), "--eval-every", str(half), "--out", str(out),
        *(["--train-encoder"] if mode == "train-encoder" else []),
    ])  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 0, printed
    result = json.loads(out.read_text())
    assert result["classes"] == sorted(COLOURS)
    assert result["train_encoder"] is (mode == "train-encoder") and result["device"] == "cpu"
    assert result["settings"]["steps"] == steps and result["settings"]["weight_decay"] == 0.0
    assert result["chance"] == pytest.approx(3 / 24)  # 8 balanced classes over 24 test clips
    assert [r["step"] for r in result["rows"]] == [half, steps]
    assert result["rows"][-1]["test_acc"] >= 3 * result["chance"], result
    assert "48 train / 24 test clips, 8 classes" in printed and f"| {steps} |" in printed


def test_probe_cli_refuses_another_corpus_attribute_file(
    corpus: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = [
        "--shards",
        str(corpus["shards"]),
        "--attribute",
        "colour",
        "--steps",
        "1",
        "--threads",
        "1",
    ]
    rc = _script().main(
        [*args, "--ckpt", str(corpus["ckpt"]), "--attributes", str(corpus["other"])]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: clip toy_0000") and str(corpus["other"]) in err
    lonely = tmp_path / "lonely"
    make_train_shards(lonely, split="train", num_samples=8, size=SIZE)
    with pytest.raises(SystemExit, match="no test_<N>f shard folder in .*lonely/toy"):
        _script().main([*args[2:], "--shards", str(lonely / "toy"),
                        "--attributes", str(corpus["attributes"])])  # fmt: skip


def test_the_documented_direction_probe_command_parses() -> None:
    # bench/README.md quotes an H200 experiment and the command that re-runs it; the command must
    # stay valid for the probe's CLI and name the raw result that ships with the repository.
    block = EXPERIMENTS.split("```bash\n")[1].split("```")[0].replace("\\\n", " ")
    line = next(x for x in block.splitlines() if x.startswith("python scripts/probe_attribute.py"))
    argv = shlex.split(line, comments=True)[2:]
    args = _script().parse_args(argv)
    assert (args.attribute, args.train_encoder, args.device, args.batch_size) == (
        "direction",
        True,
        "cuda",
        64,
    )
    raw = ROOT / "bench" / "experiments" / "direction_probe_h200.json"
    assert raw.name in EXPERIMENTS and json.loads(raw.read_text())["device"] == "NVIDIA H200"
    assert EXPERIMENTS in (ROOT / "bench" / "README.md").read_text()
