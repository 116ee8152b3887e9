import math

import pytest
import torch

from lt_noise.optim import LRSchedule, OptimizerConfig


def test_multistep_with_linear_warmup_matches_the_ldam_drw_schedule():
    schedule = LRSchedule(name="multistep", milestones=(160, 180), gamma=0.1, warmup_epochs=5)
    expected = {0: 1 / 5, 3: 4 / 5, 4: 1.0, 5: 1.0, 159: 1.0, 160: 0.1, 179: 0.1, 180: 0.01, 199: 0.01}
    for epoch, factor in expected.items():
        assert schedule.factor(epoch, 200) == pytest.approx(factor), epoch


def test_cosine_after_warmup_reaches_the_floor_at_the_horizon():
    schedule = LRSchedule(name="cosine", warmup_epochs=2, min_lr_ratio=0.1)
    assert schedule.factor(0, 12) == pytest.approx(0.5)
    assert schedule.factor(2, 12) == pytest.approx(1.0)
    # t = (7 - 2) / (12 - 2) = 0.5: halfway between 1 and the floor
    assert schedule.factor(7, 12) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert schedule.factor(12, 12) == pytest.approx(0.1)
    # a smoke run shorter than the warm-up still has a defined schedule
    assert schedule.factor(0, 1) == pytest.approx(0.5)


def test_the_built_scheduler_steps_per_epoch_and_resumes_from_its_state():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = OptimizerConfig(name="sgd", lr=0.2).build([parameter])
    schedule = LRSchedule(name="multistep", milestones=(2,), gamma=0.5)
    scheduler = schedule.build(optimizer, 5)
    lrs = []
    for _ in range(4):
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    assert lrs == pytest.approx([0.2, 0.2, 0.1, 0.1])
    state = scheduler.state_dict()
    fresh_optimizer = OptimizerConfig(name="sgd", lr=0.2).build([parameter])
    resumed = schedule.build(fresh_optimizer, 5)
    resumed.load_state_dict(state)
    resumed.step()
    scheduler.step()
    assert fresh_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]


def test_optimizers_get_their_settings():
    parameter = torch.nn.Parameter(torch.zeros(1))
    sgd = OptimizerConfig(name="sgd", lr=0.1, momentum=0.8, nesterov=True, weight_decay=1e-3).build([parameter])
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["momentum"] == 0.8 and sgd.defaults["nesterov"] and sgd.defaults["weight_decay"] == 1e-3
    adam = OptimizerConfig(name="adam", lr=1e-3, betas=(0.8, 0.9), weight_decay=0.0).build([parameter])
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["betas"] == (0.8, 0.9)
    assert isinstance(OptimizerConfig(name="adamw", lr=1e-3).build([parameter]), torch.optim.AdamW)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"name": "rmsprop"}, "name"), ({"lr": 0.0}, "lr"), ({"momentum": 1.0}, "momentum"),
     ({"weight_decay": -1.0}, "weight_decay"), ({"name": "adam", "nesterov": True}, "nesterov")],
)
def test_invalid_optimizer_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OptimizerConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"name": "step"}, "name"), ({"milestones": (5, 3)}, "milestones"), ({"milestones": (0,)}, "milestones"),
     ({"gamma": 0.0}, "gamma"), ({"warmup_epochs": -1}, "warmup_epochs"), ({"min_lr_ratio": 2.0}, "min_lr_ratio")],
)
def test_invalid_schedules(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LRSchedule(**kwargs)


def test_a_cosine_schedule_needs_a_horizon():
    with pytest.raises(ValueError, match="max_epochs"):
        LRSchedule(name="cosine").factor(0, -1)
