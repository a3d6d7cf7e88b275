"""VindLU's training rules where the paper is silent, each written out here from VindLU's code
(``utils/optimizer.py``, ``utils/scheduler.py``, ``configs/``), independently of this project's."""

from __future__ import annotations

import math

import pytest
import torch

from t2v2t.models import build_model
from t2v2t.training.config import ConfigError, load_config
from t2v2t.training.loop import optimizer_and_schedule
from t2v2t.training.optim import CosineSchedule, param_groups


def _vindlu_lambda(step: int, warmup: int, total: int, floor: float = 0.01) -> float:
    """VindLU's get_cosine_schedule_with_warmup (num_cycles 0.5, min_lr_multi 0.01)."""
    if step < warmup:
        return max(floor, step / max(1, warmup))
    progress = (step - warmup) / max(1, total - warmup)
    return max(floor, 0.5 * (1.0 + math.cos(math.pi * 2 * 0.5 * progress)))


@pytest.fixture(scope="module")
def model():
    return build_model("tiny", init="random", overrides={"image_size": 32, "vision_depth": 2})


def test_weight_decay_rule_is_vindlus_add_weight_decay(model) -> None:
    # add_weight_decay(filter_bias_and_bn=True): 0 for len(shape) == 1 or a ".bias" name, else wd
    want = {
        name for name, p in model.named_parameters()
        if p.requires_grad and (len(p.shape) == 1 or name.endswith(".bias"))
    }  # fmt: skip
    groups = param_groups(model, 0.02, decay_rule="vindlu")
    exempt = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    got = {name for name, p in model.named_parameters() if id(p) in exempt}
    assert got == want
    assert "temp" not in got  # the 0-D temperature is decayed in VindLU
    project = param_groups(model, 0.02, decay_rule="project")
    assert sum(len(g["params"]) for g in project if g["weight_decay"] == 0) > len(want)


def test_vindlu_schedule_equals_vindlus_lambda() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-5)
    for warmup_epochs in (0.0, 1.0):
        s = CosineSchedule(opt, lr=1e-5, min_lr=1e-6, warmup_epochs=warmup_epochs, epochs=5,
                           steps_per_epoch=20, rule="vindlu")  # fmt: skip
        w = int(warmup_epochs * 20)
        for step in range(100):
            assert s.get_lr(step) == pytest.approx(1e-5 * _vindlu_lambda(step, w, 100), rel=1e-12)
    assert s.get_lr(99) == pytest.approx(1e-7)  # the clamp at 0.01 x lr, not the paper's 1e-6


@pytest.mark.parametrize(
    ("task", "warmup_steps"),
    [("finetune-msrvtt", 0), ("finetune-didemo", 0), ("finetune-anet", 10)],
)
def test_vindlu_schedule_takes_vindlus_warmup_per_recipe(
    model, task: str, warmup_steps: int
) -> None:
    # configs/ret_msrvtt.py and ret_didemo.py: warmup_epochs = 0; ret_anet.py keeps pretrain's 1
    cfg = load_config(task, "tiny", ["optim.schedule=vindlu", "train.init_checkpoint=null"])
    _, sched = optimizer_and_schedule(cfg, model, steps_per_epoch=10)
    assert sched.warmup_steps == warmup_steps
    paper = load_config(task, "tiny", ["train.init_checkpoint=null"])
    _, ps = optimizer_and_schedule(paper, model, steps_per_epoch=10)
    assert ps.warmup_steps == 5 and ps.get_lr(10**6) == pytest.approx(paper.optim.min_lr)


def test_bad_rule_words_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="optim.schedule: 'hf'"):
        load_config("finetune-msrvtt", "tiny", ["optim.schedule=hf"])
    with pytest.raises(ConfigError, match="optim.decay_rule"):
        load_config("finetune-msrvtt", "tiny", ["optim.decay_rule=none"])


def test_training_crop_is_bicubic_as_vindlus_random_resized_crop(tmp_path) -> None:
    """VindLU's train transform: RandomResizedCrop(224, scale=(0.5, 1), BICUBIC) on the uint8
    frames tensor, i.e. crop, then bicubic interpolation (align_corners False, no antialias),
    rounded and clamped to uint8, then the horizontal flip. Written out here with torch."""
    import io

    import numpy as np
    import torch.nn.functional as F
    from PIL import Image

    from t2v2t.data.augment import TRAIN_SCALE, train_crop
    from t2v2t.data.loader import TrainSource, make_train_loader
    from t2v2t.data.schema import FORMAT, SampleMeta, encode_sample
    from t2v2t.data.shards import info_dict, shard_name, write_manifest, write_shard

    h, w, size = 48, 64, 32
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 4) % 256, (yy * 5) % 256, ((xx * yy) // 3) % 256], -1).astype(np.uint8)
    jpeg = io.BytesIO()
    Image.fromarray(img).save(jpeg, "JPEG", quality=100, subsampling=0)
    decoded = np.asarray(Image.open(io.BytesIO(jpeg.getvalue())).convert("RGB"))
    out = tmp_path / "rrc"
    out.mkdir()
    samples = []
    for k in range(4):
        meta = SampleMeta(
            key=f"v{k}", dataset="rrc", split="train", source="x.mp4", captions=["c"], fps=10.0,
            vlen=10, duration=1.0, frame_indices=[[5]],
            sampling={"mode": "rand", "num_frames": 1, "candidates": 1, "seed": 0}, size=[h, w],
        )  # fmt: skip
        samples.append(encode_sample(meta, [jpeg.getvalue()]))
    info = write_shard(out / shard_name("rrc", "train", 0), samples)
    write_manifest(out, {
        "format": FORMAT, "dataset": "rrc", "split": "train", "num_frames": 1, "mode": "rand",
        "candidates": 1, "seed": 0, "short_side": h, "jpeg_quality": 100, "num_samples": 4,
        "num_failed": 0, "shards": [info_dict(info)], "created_with": {},
    })  # fmt: skip

    def batch(interp: str) -> dict:
        loader = make_train_loader([TrainSource(out, 4, 1)], None, seed=3, epoch=0,
                                   image_size=size, interp=interp)  # fmt: skip
        return next(iter(loader))

    bicubic, bilinear = batch("bicubic"), batch("bilinear")
    err_cubic = err_linear = 0.0
    for i, key in enumerate(bicubic["keys"]):
        c = train_crop(h, w, 3, 0, key, TRAIN_SCALE, True)
        region = torch.from_numpy(decoded[c.top : c.top + c.height, c.left : c.left + c.width])
        x = region.permute(2, 0, 1)[None].float()
        ref = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
        ref = ref.round().clamp(0, 255)[0]  # [3, S, S]
        ref = ref.flip(-1) if c.flip else ref
        err_cubic = max(err_cubic, (bicubic["frames"][i, 0].float() - ref).abs().max().item())
        err_linear = max(err_linear, (bilinear["frames"][i, 0].float() - ref).abs().max().item())
    assert err_cubic <= 1.0  # rounding only
    assert err_linear > 4 * max(err_cubic, 1.0)  # the former bilinear crop is another image


def test_training_captions_cleaned_by_vindlus_pre_text(tmp_path) -> None:
    """VindLU's ImgTxtRetTrainDataset returns pre_text(caption): lower case, the characters
    , . ' ! ? " ( ) * # : ; ~ removed, - and / as spaces, <person> -> person, spaces collapsed."""
    import re

    from t2v2t.data.loader import TrainSource, make_train_loader
    from t2v2t.data.schema import FORMAT, SampleMeta, encode_sample
    from t2v2t.data.shards import info_dict, shard_name, write_manifest, write_shard

    def vindlu_pre_text(text: str) -> str:
        text = re.sub(r"([,.'!?\"()*#:;~])", "", text.lower())
        text = text.replace("-", " ").replace("/", " ").replace("<person>", "person")
        return re.sub(r"\s{2,}", " ", text).rstrip("\n").strip(" ")

    raw = ["A <person>'s Dog runs in/out -- FAST!", "  Two  cats; (sleeping) on a mat.  "]
    out = tmp_path / "pt"
    out.mkdir()
    samples = []
    for k, caption in enumerate(raw):
        meta = SampleMeta(
            key=f"v{k}", dataset="pt", split="train", source="x.mp4", captions=[caption],
            fps=10.0, vlen=10, duration=1.0, frame_indices=[[5]],
            sampling={"mode": "rand", "num_frames": 1, "candidates": 1, "seed": 0}, size=[8, 8],
        )  # fmt: skip
        samples.append(encode_sample(meta, [_tiny_jpeg()]))
    info = write_shard(out / shard_name("pt", "train", 0), samples)
    write_manifest(out, {
        "format": FORMAT, "dataset": "pt", "split": "train", "num_frames": 1, "mode": "rand",
        "candidates": 1, "seed": 0, "short_side": 8, "jpeg_quality": 90, "num_samples": 2,
        "num_failed": 0, "shards": [info_dict(info)], "created_with": {},
    })  # fmt: skip

    def texts(clean: bool) -> dict[str, str]:
        loader = make_train_loader([TrainSource(out, 2, 1)], None, seed=0, epoch=0, image_size=8,
                                   pre_text=clean)  # fmt: skip
        b = next(iter(loader))
        return dict(zip(b["keys"], b["texts"], strict=True))

    assert texts(True) == {f"v{k}": vindlu_pre_text(c) for k, c in enumerate(raw)}
    assert texts(False) == {f"v{k}": c for k, c in enumerate(raw)}
    assert load_config("finetune-msrvtt", "tiny").data.pre_text  # the recipes' default


def _tiny_jpeg() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 30, 200)).save(buf, "JPEG")
    return buf.getvalue()
