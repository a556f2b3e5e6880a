"""Self-training math, checked by hand: entropy, EMA, balance cap, loss, groups, reward, rollback, the loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from curation.errors import ConfigError, InputError
from curation.stage1.model import Stage1Config, Stage1Model
from curation.stage1.self_train import (
    NO_FILTER,
    PseudoLabels,
    RoundGuard,
    SelfTrainConfig,
    _Head,
    binary_entropy,
    cap_class_balance,
    ema_update,
    group_batches,
    head_probs,
    reward_allows,
    select_pseudo_labels,
    self_train,
    self_train_loss,
    verified_rewards,
)
from curation.stage1.views import ViewPolicy


def test_defaults_are_the_roadmaps_knobs():
    c = SelfTrainConfig()
    assert (c.momentum, c.entropy_threshold, c.weight, c.group_size) == (0.999, 0.3, 0.3, 256)
    with pytest.raises(ConfigError):
        SelfTrainConfig(momentum=1.0)
    with pytest.raises(ConfigError):
        SelfTrainConfig(max_class_share=0.4)


def test_binary_entropy_by_hand():
    h = binary_entropy(torch.tensor([0.5, 0.0, 1.0, 0.92, 0.08]))
    assert h[0].item() == pytest.approx(math.log(2))
    assert h[1].item() == 0.0 and h[2].item() == 0.0
    expected = -(0.92 * math.log(0.92) + 0.08 * math.log(0.08))  # 0.279 nats: just inside 0.3
    assert h[3].item() == pytest.approx(expected) and h[4].item() == pytest.approx(expected)


def test_ema_update_moves_the_teacher_by_one_minus_m():
    teacher, student = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        for p in teacher.parameters():
            p.fill_(1.0)
        for p in student.parameters():
            p.fill_(0.0)
    ema_update(teacher, student, 0.9)
    assert torch.allclose(teacher.weight, torch.full((1, 2), 0.9)) and torch.allclose(teacher.bias, torch.tensor([0.9]))
    ema_update(teacher, student, 0.0)  # m = 0: the teacher is the student (plain pseudo-labelling)
    assert torch.equal(teacher.weight, student.weight)


def test_balance_cap_trims_the_larger_class_least_confident_first():
    pseudo = torch.tensor([0] * 10 + [1] * 2)
    accepted = torch.ones(12, dtype=torch.bool)
    confidence = torch.tensor([0.90 + 0.009 * i for i in range(10)] + [0.99, 0.99])
    keep = cap_class_balance(pseudo, accepted, confidence, 0.8)  # 0.8/0.2 · 2 positives = 8 negatives
    assert int(keep[:10].sum()) == 8 and keep[10:].all()
    assert not keep[0] and not keep[1] and keep[2:10].all()  # the two least confident negatives went
    alone = cap_class_balance(torch.zeros(5, dtype=torch.long), torch.ones(5, dtype=torch.bool), torch.ones(5), 0.8)
    assert not alone.any()  # one class alone teaches nothing
    assert cap_class_balance(pseudo, accepted, confidence, 1.0).all()  # share 1: the cap is off


def test_select_filters_by_entropy_then_caps():
    p = torch.tensor([0.99, 0.5, 0.01, 0.9, 0.02])
    sel = select_pseudo_labels(p, 0.3, 1.0)
    assert sel.label.tolist() == [1, 0, 0, 1, 0]
    assert sel.keep.tolist() == [True, False, True, False, True]  # H(0.9) = 0.325 > 0.3
    assert sel.confidence[0].item() == pytest.approx(0.99) and sel.confidence[2].item() == pytest.approx(0.99)
    capped = select_pseudo_labels(p, 0.3, 0.5)  # one positive ⇒ one negative (the most confident: p = 0.01)
    assert capped.keep.tolist() == [True, False, True, False, False]
    assert select_pseudo_labels(p, NO_FILTER, 1.0).keep.all()


def test_loss_by_hand():
    zeros = torch.zeros(4)
    pseudo = PseudoLabels(torch.tensor([1, 0, 1, 0]), torch.ones(4), torch.zeros(4), torch.tensor([True, True, False, False]))
    loss = self_train_loss(torch.zeros(2), torch.tensor([0, 1]), (1.0, 3.0), zeros, pseudo, 0.3)
    # labeled: mean(1·ln2, 3·ln2) = 2 ln2; pseudo: 0.3 · (2 kept · ln2) / 4 in the group
    assert loss.item() == pytest.approx(2 * math.log(2) + 0.3 * 2 * math.log(2) / 4)


def test_groups_cover_the_pool_once_and_are_seeded():
    groups = group_batches(600, 256, seed=3, epoch=1)
    assert [len(g) for g in groups] == [256, 256, 88]
    assert sorted(torch.cat(groups).tolist()) == list(range(600))
    assert all(torch.equal(a, b) for a, b in zip(groups, group_batches(600, 256, seed=3, epoch=1)))
    assert not torch.equal(groups[0], group_batches(600, 256, seed=3, epoch=2)[0])


def test_verified_reward_and_the_precision_gate():
    r = verified_rewards(np.array([1, 0, 1, -1, 0]), np.array([1, 1, -1, 0, 0]))
    assert r.tolist() == [1, -1, 0, 0, 1]
    assert reward_allows(r, min_verified=20, min_precision=0.9)[0]  # 3 verified: too few to judge
    bad = np.array([1] * 15 + [-1] * 5)
    ok, why = reward_allows(bad, min_verified=20, min_precision=0.9)
    assert not ok and "0.750" in why


def test_round_guard_keeps_the_best_and_rolls_back_on_a_drop():
    guard = RoundGuard(tolerance=0.02, patience=2)
    state = lambda v: {"w": torch.tensor([v])}
    assert guard.observe(0, 0.50, state(0.0)) == "improved"
    assert guard.observe(1, 0.60, state(1.0)) == "improved"
    assert guard.observe(2, 0.59, state(2.0)) == "held"
    assert guard.observe(3, 0.55, state(3.0)) == "rollback"
    assert guard.best_round == 1 and guard.best_state["w"].item() == 1.0
    patient = RoundGuard(tolerance=0.1, patience=2)
    assert [patient.observe(i, s, state(i)) for i, s in enumerate([0.5, 0.5, 0.45])] == ["improved", "held", "stop"]


# The loop on synthetic features --------------------------------------------------------------------
def _model(hidden: int = 8) -> Stage1Model:
    from types import SimpleNamespace

    class WidthOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = SimpleNamespace(hidden_size=hidden, num_register_tokens=0)

    return Stage1Model.build(Stage1Config(views=ViewPolicy(grid=0), aggregator="max"), backbone=WidthOnly(), seed=0)


def _blobs(n: int, positive: float, seed: int, hidden: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, generator=g) < positive).long()
    x = torch.randn(n, 1, 2 * hidden, generator=g)
    x[:, 0, 0] += 3.0 * (2 * y - 1).float()  # one informative direction
    return x, y


def _warm(model: Stage1Model, x: torch.Tensor, y: torch.Tensor) -> None:
    from curation.stage1.train import TrainConfig, train_head

    train_head(x, y, TrainConfig(epochs=20, batch_size=16, lr=1e-2, class_weights="balanced", fast_head=False), model=model)


def _calib_mcc(x: torch.Tensor, y: torch.Tensor):
    from curation.stage1.calibrate import threshold_for_max_mcc

    return lambda model: threshold_for_max_mcc(y.numpy(), head_probs(_Head(model), x).numpy()).mcc


def test_self_train_runs_rounds_and_keeps_the_best_student():
    torch.manual_seed(0)
    x_l, y_l = _blobs(40, 0.5, 1)
    x_u, _ = _blobs(600, 0.3, 2)
    x_c, y_c = _blobs(200, 0.5, 3)
    model = _model()
    _warm(model, x_l, y_l)
    seen = []
    result = self_train(
        model, x_l, y_l, x_u, SelfTrainConfig(max_rounds=3, passes_per_round=1, lr=1e-2), guard_score=_calib_mcc(x_c, y_c), on_round=seen.append
    )
    assert 1 <= len(result.rounds) <= 3 and seen == list(result.rounds)
    assert result.rounds[0].steps == 3  # 600 / 256 → 3 groups per pass
    assert all(r.accepted_pos > 0 and r.accepted_neg <= 4 * r.accepted_pos for r in result.rounds)  # the 0.8 cap: ≤ 4 negatives per positive
    assert result.best_guard_mcc >= result.start_guard_mcc
    assert result.pseudo is not None and result.pseudo.label.shape == (600,)


def test_a_falling_guard_score_rolls_back_to_the_warm_start_and_its_teacher():
    x_l, y_l = _blobs(40, 0.5, 1)
    x_u, _ = _blobs(300, 0.3, 2)
    model = _model()
    _warm(model, x_l, y_l)
    before = {k: v.clone() for k, v in model.head.state_dict().items()}
    scores = iter([0.8, 0.5, 0.9])  # warm start, then a collapse
    config = SelfTrainConfig(max_rounds=3, passes_per_round=1, lr=0.5, momentum=0.0)  # m = 0: the teacher follows the collapsing student
    result = self_train(model, x_l, y_l, x_u, config, guard_score=lambda m: next(scores))
    assert result.best_round == 0 and result.rounds[-1].verdict == "rollback" and len(result.rounds) == 1
    assert all(torch.equal(before[k], v) for k, v in model.head.state_dict().items())  # the warm start's weights again
    # ...and the pseudo-labels come from the kept round's teacher (the warm start), not the collapsed one
    from curation.stage1.self_train import _Head, head_probs, select_pseudo_labels

    expected = select_pseudo_labels(head_probs(_Head(model), x_u), 0.3, 0.8)
    assert torch.equal(torch.as_tensor(result.pseudo.label), torch.as_tensor(expected.label))
    assert torch.equal(torch.as_tensor(result.pseudo.keep), torch.as_tensor(expected.keep))


def test_only_negatives_in_the_stream_teach_nothing():
    x_l, y_l = _blobs(40, 0.5, 1)
    x_u, _ = _blobs(300, 0.0, 2)  # all negatives: the cap keeps none of them
    model = _model()
    _warm(model, x_l, y_l)
    result = self_train(model, x_l, y_l, x_u, SelfTrainConfig(max_rounds=1, passes_per_round=1), guard_score=lambda m: 0.0)
    assert result.rounds[0].accepted_neg == 0 and result.rounds[0].accepted_pos <= 1


def test_labels_must_have_both_classes():
    x, _ = _blobs(10, 0.5, 1)
    with pytest.raises(InputError):
        self_train(_model(), x, torch.zeros(10), x, SelfTrainConfig(), guard_score=lambda m: 0.0)
