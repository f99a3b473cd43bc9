"""Training the toolken head on cached features.

Every epoch is a few small matrix products over the cache from
:mod:`toolken_agent.features`; the LM is never run here. The loss is the joint
cross-entropy (vocabulary plus toolkens, over call *and* non-call positions, so the
toolkens also learn when not to fire) plus the re-initialization regularizer
``lambda * ||W - W_prior||``. Metrics are computed separately from the loss.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import torch

from .data import split_holdout
from .defaults import FIT
from .features import Features
from .gate import TARGET_FALSE_POSITIVES, CallGate, choose_threshold, fit_gate, fit_reach
from .head import ToolkenHead


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = FIT.epochs
    lr: float = FIT.lr  # Adam
    lambda_: float = FIT.lambda_  # larger keeps rows nearer their prior
    batch_size: int = FIT.batch_size  # positions per step
    seed: int = FIT.seed

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError("epochs must be >= 0")
        if self.lr <= 0:
            raise ValueError("learning rate must be > 0")
        if self.lambda_ < 0:
            raise ValueError("lambda must be >= 0")
        if self.batch_size < 1:
            raise ValueError("batch size must be >= 1")


@dataclass
class TrainResult:
    epoch_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


class TrainingInterrupted(Exception):
    """Ctrl-C during training; the head holds the last finished epoch's weights."""

    def __init__(self, result: TrainResult):
        super().__init__(f"interrupted after {len(result.epoch_losses)} epochs")
        self.result = result


def joint_loss(head: ToolkenHead, batch: Features) -> torch.Tensor:
    """Mean joint cross-entropy over the batch's positions (no regularizer)."""
    tool_logits = head(batch.hidden)  # (B, n_tools)
    joint_lse = torch.logaddexp(batch.vocab_lse, torch.logsumexp(tool_logits, dim=-1))  # (B,)
    tool_target = batch.tool_target
    tool_score = tool_logits.gather(1, tool_target.clamp(min=0)[:, None])[:, 0]  # (B,)
    score = torch.where(tool_target >= 0, tool_score, batch.target_logit)
    return (joint_lse - score).mean()


def train_head(
    head: ToolkenHead,
    features: Features,
    config: TrainConfig = TrainConfig(),
    *,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Adam on ``head``'s parameters over shuffled minibatches of cached positions.

    On Ctrl-C the head is rolled back to the last finished epoch and
    :class:`TrainingInterrupted` is raised, so the caller can save that state.
    Training resets ``head.mix`` to 1: the loss is the plain head's; a mix with the
    prior is set afterwards (:func:`cross_fitted_mix`, or ``Toolkens.bind``'s 0).
    """
    result = TrainResult()
    head.mix = 1.0
    if len(features) == 0 or config.epochs == 0:
        return result
    gen = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(head.parameters(), lr=config.lr)
    start = time.perf_counter()
    good_state = copy.deepcopy(head.state_dict())
    try:
        for epoch in range(config.epochs):
            order = torch.randperm(len(features), generator=gen)
            total, count = 0.0, 0
            for lo in range(0, len(features), config.batch_size):
                batch = features.subset(order[lo : lo + config.batch_size])
                ce = joint_loss(head, batch)
                loss = ce + config.lambda_ * head.regularizer()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(ce.detach()) * len(batch)
                count += len(batch)
            result.epoch_losses.append(total / count)
            good_state = copy.deepcopy(head.state_dict())
            if on_epoch is not None:
                on_epoch(epoch, result.epoch_losses[-1])
    except KeyboardInterrupt:
        head.load_state_dict(good_state)
        result.interrupted = True
        result.seconds = time.perf_counter() - start
        raise TrainingInterrupted(result) from None
    result.seconds = time.perf_counter() - start
    return result


@torch.no_grad()
def predict_decisions(head: ToolkenHead, features: Features, *, tool_bias: float = 0.0) -> torch.Tensor:
    """At each row: the toolken that is called (index), or -1 if a word wins.

    With a gate, the gate decides whether (at its threshold, within its reach) and the head which;
    without, the best toolken is called where it beats the best word.
    """
    raw = head(features.hidden)  # (N, n_tools)
    best, index = (raw + tool_bias).max(dim=-1)
    if head.gate is not None:
        fire = head.gate.fires(features.hidden, raw, features.vocab_max, tool_bias=tool_bias)
    else:
        fire = best > features.vocab_max
    return torch.where(fire, index, -1)


@torch.no_grad()
def no_call_rate(head: ToolkenHead, features: Features) -> float:
    """Share of ``features``' rows (decisions whose gold is text) where no toolken beats the best word."""
    return float((predict_decisions(head, features) < 0).float().mean())


@torch.no_grad()
def selection_accuracy(head: ToolkenHead, features: Features, *, tool_bias: float = 0.0) -> dict[str, float]:
    """Tool-selection accuracy at decision points.

    A call turn is right when its toolken beats every word and every other toolken; a
    turn without a call is right when no toolken beats the best word.
    """
    rows = features.subset(features.decision)
    if len(rows) == 0:
        return {"accuracy": float("nan"), "decisions": 0, "call_accuracy": float("nan"), "no_call_accuracy": float("nan")}
    predicted = predict_decisions(head, rows, tool_bias=tool_bias)
    gold = rows.tool_target
    right = predicted == gold
    calls = gold >= 0

    def rate(mask: torch.Tensor) -> float:
        return float(right[mask].float().mean()) if bool(mask.any()) else float("nan")

    return {
        "accuracy": float(right.float().mean()),
        "decisions": int(len(rows)),
        "call_accuracy": rate(calls),
        "no_call_accuracy": rate(~calls),
    }


LAMBDAS = FIT.lambdas


def pick_lambda(scores: dict[float, float]) -> float:
    """The best-scoring lambda; an exact tie goes to the larger one, the stronger pull to the prior.

    Why not the largest lambda within a standard error of the best (tried): the split
    cannot see what a stronger pull costs on new questions (docs/design-notes.md,
    "Choosing lambda").
    """
    best = max(scores.values())
    return max(lam for lam, score in scores.items() if score == best)


def choose_lambda(
    make_head: Callable[[], ToolkenHead],
    features: Features,
    config: TrainConfig = TrainConfig(),
    *,
    lambdas: Sequence[float] = LAMBDAS,
    holdout: float = 0.2,
    on_epoch: Callable[[int, float], None] | None = None,
) -> tuple[float, dict[str, float]]:
    """The regularizer weight that decides best on a split of ``features``' examples.

    Why a sweep: how far the rows may leave their priors depends on the data and the
    model, so no one lambda suits every toolset. The score is held-out decision accuracy
    (calls right *and* no-calls right) because call accuracy alone rewards prior rows
    that fire everywhere. Requests that need no tool are not scored apart, because a
    handful of them would outvote hundreds of held-out calls; keeping the toolkens quiet
    on such requests is the training data's job
    (:func:`toolken_agent.augment.with_built_in_negatives`). The measurements behind
    each choice are in docs/design-notes.md ("Choosing lambda").

    Each candidate trains a fresh head from ``make_head()`` on the rest of the
    examples; :func:`pick_lambda` picks among the scores. With too few examples to
    split, ``config.lambda_``. ``on_epoch`` hears every epoch of every candidate.
    """
    examples = torch.unique(features.example).tolist() if len(features) else []
    train_pos, held_pos = split_holdout(len(examples), holdout, seed=config.seed)
    held = features.for_examples([examples[i] for i in held_pos]) if held_pos else None
    if held is None or not bool(((held.tool_target >= 0) & held.decision).any()):
        return config.lambda_, {}
    train_part = features.for_examples([examples[i] for i in train_pos])
    scores: dict[float, float] = {}
    for lam in lambdas:
        head = make_head()
        train_head(head, train_part, TrainConfig(epochs=config.epochs, lr=config.lr, lambda_=lam,
                                                 batch_size=config.batch_size, seed=config.seed), on_epoch=on_epoch)
        scores[lam] = selection_accuracy(head, held)["accuracy"]
    return pick_lambda(scores), {str(lam): score for lam, score in scores.items()}


MIXES = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)


def check_folds(check: Features) -> tuple[list[int], list[int]]:
    """The check requests' examples in two folds: per tool, in order, alternately (requests without a call count as one tool)."""
    first_tool: dict[int, int] = {}
    for row in torch.nonzero(check.decision).flatten().tolist():
        first_tool.setdefault(int(check.example[row]), int(check.tool_target[row]))
    seen: dict[int, int] = {}
    folds: tuple[list[int], list[int]] = ([], [])
    for example in sorted(torch.unique(check.example).tolist()) if len(check) else []:
        tool = first_tool.get(example, -1)
        folds[seen.get(tool, 0) % 2].append(example)
        seen[tool] = seen.get(tool, 0) + 1
    return folds


def cross_fitted_mix(make_head: Callable[[], ToolkenHead], train: Features, check: Features,
                     config: TrainConfig = TrainConfig(), *, mixes: Sequence[float] = MIXES,
                     on_epoch: Callable[[int, float], None] | None = None) -> tuple[float, dict[str, float]]:
    """The weight of the trained rows in the tool choice (``ToolkenHead.mix``), chosen on real check requests.

    Real requests both teach (as training data) and show how far to trust the trained
    rows over the description priors on requests like them; a head trained on them
    would rate itself best on them, so the choice is cross-fitted: each fold of them
    (:func:`check_folds`) is scored by a head from ``make_head()`` trained on ``train``
    and the other fold, and the mix with the most right decisions over both folds wins
    (an exact tie to the larger mix, as :func:`pick_lambda`). With a fold holding no
    call, 1 (the trained head).
    """
    folds = check_folds(check)
    scored = [check.for_examples(fold) if fold else None for fold in folds]
    if any(f is None or not bool(((f.tool_target >= 0) & f.decision).any()) for f in scored):
        return 1.0, {}
    right, decisions = dict.fromkeys(mixes, 0.0), 0
    for k, held in enumerate(scored):
        head = make_head()
        train_head(head, train.extended(check.for_examples(folds[1 - k])), config, on_epoch=on_epoch)
        for mix in mixes:
            head.mix = mix
            result = selection_accuracy(head, held)
            right[mix] += result["accuracy"] * result["decisions"]
        decisions += result["decisions"]
    scores = {mix: right[mix] / decisions for mix in mixes}
    return pick_lambda(scores), {str(mix): score for mix, score in scores.items()}


@torch.no_grad()
def _gate_inputs(head: ToolkenHead, features: Features) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    rows = features.subset(features.decision)
    return rows.hidden, head(rows.hidden), rows.vocab_max, rows.tool_target >= 0


def train_reach(head: ToolkenHead, train: Features, held: Features, *, miss: float, seed: int = 0,
                held_in_train: bool = False) -> dict[str, Any]:
    """Give ``head``'s gate a reach (:func:`~toolken_agent.gate.fit_reach`): anchors from ``train``'s calls, radius from ``held``'s.

    ``held_in_train``: ``held``'s examples are ``train``'s too (same numbering), so each is
    measured against the others' anchors. Run on the final head: the anchors are its logits.
    """
    if head.gate is None:
        return {}
    calls = [(f.tool_target >= 0) & f.decision for f in (train, held)]
    with torch.no_grad():
        anchors, held_calls = (head(f.hidden[c]) for f, c in zip((train, held), calls))
    owners = dict(anchor_owner=train.example[calls[0]], held_owner=held.example[calls[1]]) if held_in_train else {}
    return fit_reach(head.gate, anchors, held_calls, miss=miss, seed=seed, **owners)


def train_gate(head: ToolkenHead, train: Features, held: Features | None, *, quiet: Features | None = None,
               target: float = TARGET_FALSE_POSITIVES) -> tuple[CallGate | None, dict[str, Any]]:
    """Fit the whether-to-call gate on ``train``'s decisions; threshold it on ``held``'s and ``quiet``'s.

    The threshold gets the most held-out calls right while at most ``target`` of the
    no-call decisions fire (:func:`~toolken_agent.gate.choose_threshold`); without a
    held-out share, on the training decisions. ``quiet``: reply starts of requests that
    need no tool (the built-in ones), counted as no-call decisions too, because
    call-only data holds few such requests and the replies after results it gets are
    easy to keep quiet: thresholded on those alone, the gate fired on requests about
    nothing the tools do. ``None`` when the decisions hold one class only.
    Returns the gate and its figures at the threshold.
    """
    hidden, tool_logits, best, calls = _gate_inputs(head, train)
    if not bool(calls.any()) or bool(calls.all()):
        return None, {}
    gate = fit_gate(hidden, tool_logits, best, calls)
    score_on = held if held is not None and bool((held.decision & (held.tool_target < 0)).any()) else train
    hidden, tool_logits, best, calls = _gate_inputs(head, score_on.extended(quiet) if quiet is not None else score_on)
    with torch.no_grad():
        p = gate.probability(hidden, tool_logits, best)
    gate.threshold = choose_threshold(p, calls, target=target)
    fired = p >= gate.threshold
    report = {"threshold": gate.threshold, "target_false_positives": target,
              "call_rate": float(fired[calls].float().mean()) if bool(calls.any()) else None,
              "false_positive_rate": float(fired[~calls].float().mean()) if bool((~calls).any()) else None,
              "scored_on": "held-out" if score_on is held else "training"}
    return gate, report
