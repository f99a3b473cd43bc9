"""Training on cached features: the cache is exact, and only the toolkens move."""

from __future__ import annotations

import copy

import pytest
import torch

from toolken_agent.augment import example_conversations
from toolken_agent.data import NEGATIVE_EXAMPLES
from toolken_agent.features import Features, extract_features
from toolken_agent.head import ToolkenHead
from toolken_agent.toolkens import Toolkens
from toolken_agent.training import (
    LAMBDAS,
    TrainConfig,
    TrainingInterrupted,
    choose_lambda,
    pick_lambda,
    joint_loss,
    selection_accuracy,
    train_head,
)


@pytest.fixture()
def toolkens_and_features(tiny_lm, small_toolset):
    toolkens = Toolkens.from_priors(tiny_lm, small_toolset, prior="lm-head")
    conversations = example_conversations(small_toolset)
    return toolkens, conversations, toolkens.features(conversations)


def test_cached_loss_equals_cross_entropy_over_full_joint_logits(toolkens_and_features):
    toolkens, conversations, features = toolkens_and_features
    with torch.no_grad():
        toolkens.head.bias.uniform_(-1, 1)
    expected = []
    for conversation in conversations:
        rendered = toolkens.chat_format.render(conversation.messages, train=True)
        logits = toolkens.logits(torch.tensor([rendered.input_ids]))[0]  # (T, V + n)
        ce = torch.nn.functional.cross_entropy(logits[rendered.positions], torch.tensor(rendered.targets), reduction="none")
        expected.append(ce)
    expected = torch.cat(expected)
    order = torch.argsort(features.example, stable=True)  # features come sorted by length
    with torch.no_grad():
        assert torch.allclose(joint_loss(toolkens.head, features.subset(order)), expected.mean(), atol=1e-5)


def test_a_training_step_changes_only_toolken_rows(toolkens_and_features, tiny_lm):
    toolkens, _, features = toolkens_and_features
    lm_before = copy.deepcopy(tiny_lm.model.state_dict())
    head_before = copy.deepcopy(toolkens.head.state_dict())
    train_head(toolkens.head, features, TrainConfig(epochs=1, batch_size=8))
    assert all(torch.equal(v, tiny_lm.model.state_dict()[k]) for k, v in lm_before.items())
    assert not torch.equal(head_before["weight"], toolkens.head.weight)
    assert torch.equal(head_before["prior"], toolkens.head.prior)
    assert all(not p.requires_grad for p in tiny_lm.model.parameters())


def test_training_lowers_the_loss(toolkens_and_features):
    toolkens, _, features = toolkens_and_features
    with torch.no_grad():
        before = float(joint_loss(toolkens.head, features))
    result = train_head(toolkens.head, features, TrainConfig(epochs=30, lr=1e-2, batch_size=16))
    with torch.no_grad():
        after = float(joint_loss(toolkens.head, features))
    assert after < before
    assert len(result.epoch_losses) == 30


def test_large_lambda_keeps_rows_at_their_prior(toolkens_and_features):
    toolkens, _, features = toolkens_and_features
    free = copy.deepcopy(toolkens.head)
    train_head(free, features, TrainConfig(epochs=10, lr=1e-2, lambda_=0.0))
    tied = copy.deepcopy(toolkens.head)
    train_head(tied, features, TrainConfig(epochs=10, lr=1e-2, lambda_=100.0))
    assert tied.regularizer() < free.regularizer()


def test_ctrl_c_during_training_keeps_the_last_finished_epoch(toolkens_and_features):
    toolkens, _, features = toolkens_and_features
    snapshots = []

    def on_epoch(epoch, loss):
        snapshots.append(toolkens.head.weight.detach().clone())
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as info:
        train_head(toolkens.head, features, TrainConfig(epochs=10), on_epoch=on_epoch)
    # epoch 2 finished before the interrupt arrived in its callback
    assert len(info.value.result.epoch_losses) == 3
    assert torch.equal(toolkens.head.weight, snapshots[-1])


def test_accuracy_counts_a_no_call_turn_right_only_when_no_toolken_fires(toolkens_and_features):
    toolkens, _, features = toolkens_and_features
    with torch.no_grad():
        toolkens.head.bias.fill_(1e6)  # every toolken fires everywhere
    acc = selection_accuracy(toolkens.head, features)
    assert acc["no_call_accuracy"] == 0.0
    with torch.no_grad():
        toolkens.head.bias.fill_(-1e6)  # never fires
    acc = selection_accuracy(toolkens.head, features)
    assert acc["no_call_accuracy"] == 1.0 and acc["call_accuracy"] == 0.0


def test_features_cover_every_target_once(tiny_lm, small_toolset):
    toolkens = Toolkens.from_priors(tiny_lm, small_toolset)
    conversations = example_conversations(small_toolset)
    rendered = [toolkens.chat_format.render(c.messages, train=True) for c in conversations]
    features = extract_features(tiny_lm, rendered, max_batch_tokens=64)
    assert len(features) == sum(len(r.positions) for r in rendered)
    assert int((features.tool_target >= 0).sum()) == 3  # three example calls


def _one_call_per_example(tools: list[int], d: int = 8, vocab_size: int = 4) -> Features:
    """One call decision per example; example i calls ``tools[i]`` from a hidden state that points at it."""
    n = len(tools)
    hidden = torch.zeros(n, d)
    hidden[torch.arange(n), torch.tensor(tools)] = 5.0
    zeros = torch.zeros(n)
    return Features(hidden=hidden, vocab_lse=zeros, vocab_max=zeros, target_logit=zeros,
                    target=torch.tensor(tools) + vocab_size, decision=torch.ones(n, dtype=torch.bool),
                    example=torch.arange(n), vocab_size=vocab_size)


def test_lambda_sweep_lets_rows_leave_a_wrong_prior_when_the_data_says_so():
    features = _one_call_per_example([0, 1] * 20)
    wrong = torch.zeros(2, 8)
    wrong[0, 1] = wrong[1, 0] = 1.0  # each prior row points at the other tool

    chosen, scores = choose_lambda(lambda: ToolkenHead(wrong.clone(), bias=False), features,
                                   TrainConfig(epochs=50, lr=0.1, batch_size=8))
    assert set(scores) == {str(lam) for lam in LAMBDAS}
    assert scores["10.0"] < scores["0.0"] == 1.0
    assert chosen < 10.0 and scores[str(chosen)] == 1.0


def test_lambda_sweep_tie_goes_to_the_strongest_pull_to_the_prior():
    features = _one_call_per_example([0, 1] * 20)
    chosen, scores = choose_lambda(lambda: ToolkenHead(torch.eye(2, 8), bias=False), features, TrainConfig(epochs=0))
    assert len(set(scores.values())) == 1 and chosen == max(LAMBDAS)


def test_lambda_sweep_needs_enough_examples_to_split_else_keeps_the_configured_lambda():
    features = _one_call_per_example([0, 1, 0, 1, 0])
    assert choose_lambda(lambda: ToolkenHead(torch.eye(2, 8)), features, TrainConfig(lambda_=0.3)) == (0.3, {})


@pytest.mark.parametrize("calibrate", [True, False])
def test_fit_starts_biases_where_zero_shot_toolkens_have_them_unless_told_not_to(tiny_lm, small_toolset, calibrate):
    from toolken_agent.calibration import zero_shot_bias

    toolkens, report = Toolkens.fit(tiny_lm, small_toolset, example_conversations(small_toolset), calibrate=calibrate,
                                    config=TrainConfig(epochs=0), holdout=0.0)
    expected = zero_shot_bias(tiny_lm, toolkens.head.weight) if calibrate else torch.zeros(len(small_toolset))
    assert torch.equal(toolkens.head.bias.detach(), expected)
    assert expected.abs().sum() > 0 or not calibrate  # calibration actually moved the biases
    assert report.lambda_sweep == {} and report.lambda_ == 0.01


def test_lambda_pick_takes_the_best_score_and_an_exact_tie_goes_to_the_larger_lambda():
    assert pick_lambda({0.0: 0.985, 0.001: 0.981, 0.01: 0.981, 10.0: 0.4}) == 0.0
    assert pick_lambda({0.0: 0.9, 0.001: 0.9, 0.01: 0.8}) == 0.001
    assert pick_lambda({0.0: 0.5, 10.0: 0.9}) == 10.0


@pytest.mark.parametrize("negatives", [True, False])
def test_fit_adds_the_built_in_no_tool_requests_to_data_that_holds_none(tiny_lm, small_toolset, negatives):
    only_calls = example_conversations(small_toolset, with_negatives=False)
    _, report = Toolkens.fit(tiny_lm, small_toolset, only_calls, negatives=negatives, config=TrainConfig(epochs=0), holdout=0.0)
    added = len(NEGATIVE_EXAMPLES) if negatives else 0
    assert report.negatives_added == added and report.examples == len(only_calls) + added


def test_extended_features_keep_their_kinds_and_number_the_added_examples_after():
    calls = _one_call_per_example([0, 1, 0])
    more = _one_call_per_example([1, 1])
    both = calls.extended(more)
    assert len(both) == 5 and both.decision.dtype == torch.bool and both.target.dtype == torch.long
    assert both.example.tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(both.for_examples([3, 4]).hidden, more.hidden)
    assert len(both.subset(both.decision)) == 5  # a mask still selects rows, not indices 0 and 1


def _prior_right_trained_wrong() -> ToolkenHead:
    """Prior rows point at each example's tool; the trained rows at the other one."""
    head = ToolkenHead(torch.eye(2, 8), bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(2, 8)[[1, 0]])
    return head


def test_training_resets_the_mix_to_the_plain_head():
    head = _prior_right_trained_wrong()
    head.mix = 0.25
    train_head(head, _one_call_per_example([0, 1] * 4), TrainConfig(epochs=1))
    assert head.mix == 1.0


def _mislabelled(tools: list[int]) -> Features:
    """Like :func:`_one_call_per_example`, but each example's target is the other tool (misleading synthetic texts)."""
    features = _one_call_per_example(tools)
    return Features(**{**features.__dict__, "target": (1 - (features.target - features.vocab_size)) + features.vocab_size})


def test_check_requests_fold_alternately_within_each_tool():
    from toolken_agent.training import check_folds

    assert check_folds(_one_call_per_example([0, 0, 1, 0, 1, 1])) == ([0, 2, 3, 5], [1, 4])  # tool 0: 0, 1, 3; tool 1: 2, 4, 5


def test_the_cross_fitted_mix_leans_on_the_priors_when_the_training_texts_mislead():
    from toolken_agent.training import cross_fitted_mix

    check = _one_call_per_example([0, 1] * 4)
    config = TrainConfig(epochs=30, lr=0.1, batch_size=8, lambda_=0.0)
    misleading, scores = cross_fitted_mix(lambda: ToolkenHead(torch.eye(2, 8), bias=False), _mislabelled([0, 1] * 20),
                                          check, config)
    assert misleading < 1.0 and scores["0.0"] == 1.0 and scores["1.0"] < 1.0  # right priors: lean on them
    honest, scores = cross_fitted_mix(lambda: ToolkenHead(torch.eye(2, 8)[[1, 0]], bias=False),
                                      _one_call_per_example([0, 1] * 20), check, config)
    assert honest == 1.0 and scores["1.0"] == 1.0 and scores["0.0"] < 1.0  # wrong priors: the trained rows
    one_fold = _one_call_per_example([0])
    assert cross_fitted_mix(lambda: ToolkenHead(torch.eye(2, 8)), check, one_fold, config) == (1.0, {})


def test_fit_with_check_requests_trains_on_them_and_sets_the_radius_on_them(tiny_lm, small_toolset, tmp_path):
    conversations = example_conversations(small_toolset, with_negatives=False)
    check = conversations * 10  # enough real requests for a radius at the default miss rate
    plain, _ = Toolkens.fit(tiny_lm, small_toolset, conversations, config=TrainConfig(epochs=2), holdout=0.0)
    toolkens, report = Toolkens.fit(tiny_lm, small_toolset, conversations, check=check,
                                    config=TrainConfig(epochs=2), holdout=0.0)
    assert report.check_examples == len(check)
    assert report.positions > plain.training["positions"]  # the check requests joined the training share
    assert report.reach["radius"] is not None and report.reach["held_out_calls"] > 0
    assert toolkens.head.mix == report.mix and set(report.mix_scores) == {"0.0", "0.1", "0.25", "0.5", "0.75", "1.0"}
    loaded = Toolkens.load(toolkens.save(tmp_path / "tk"), small_toolset, lm=tiny_lm)
    assert loaded.gate.radius == pytest.approx(toolkens.gate.radius)


class PhaseRecorder:
    """A :class:`~toolken_agent.toolkens.FitProgress` that writes down what it hears, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, int]] = []

    def start(self, phase: str, total: int) -> None:
        self.events.append(("start", phase, total))

    def advance(self, phase: str, n: int = 1, info: str = "") -> None:
        self.events.append(("advance", phase, n))

    def end(self, phase: str) -> None:
        self.events.append(("end", phase, 0))


@pytest.mark.parametrize("with_negatives", [True, False], ids=["no-call-data", "calls-only"])
def test_every_phase_of_fit_knows_its_total_when_it_starts_and_reaches_it_before_it_ends(tiny_lm, small_toolset,
                                                                                          with_negatives):
    """A bar per phase needs its total from the start (the caching bar used to learn it only at the end).

    Calls-only data gets the built-in no-tool requests, whose features are cached too.
    """
    progress = PhaseRecorder()
    conversations = example_conversations(small_toolset, with_negatives=with_negatives) * 4  # enough to split for the sweep
    _, report = Toolkens.fit(tiny_lm, small_toolset, conversations, config=TrainConfig(epochs=2), progress=progress)
    open_phases: dict[str, list[int]] = {}  # phase -> [total, done]
    for kind, phase, n in progress.events:
        if kind == "start":
            assert phase not in open_phases
            open_phases[phase] = [n, 0]
        elif kind == "advance":
            assert phase in open_phases, f"{phase} advanced outside its start and end"
            open_phases[phase][1] += n
        else:
            total, done = open_phases.pop(phase)
            assert done <= total, f"{phase} went past its total: {done} of {total}"  # short is allowed (work cached)
    assert not open_phases
    started = [phase for kind, phase, _ in progress.events if kind == "start"]
    assert {"caching", "lambda sweep", "training"} <= set(started) and list(report.phase_seconds) == started
