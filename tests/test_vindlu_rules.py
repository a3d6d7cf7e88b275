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
