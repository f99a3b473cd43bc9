"""A frozen LM, a toolset and a toolken head together: what users train, save and load.

    >>> from toolken_agent import Toolkens, load_model, load_toolset
    >>> lm, tools = load_model(), load_toolset("math")
    >>> toolkens, report = Toolkens.fit(lm, tools, conversations)      # doctest: +SKIP
    >>> toolkens.save_pretrained("runs/math")                          # doctest: +SKIP
    >>> Toolkens.from_pretrained("runs/math", tools=tools)             # doctest: +SKIP
    >>> toolkens.push_to_hub("me/toolkens-math")                       # doctest: +SKIP

``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` are huggingface_hub's
:class:`~huggingface_hub.ModelHubMixin` over the atomic checkpoint format of
:mod:`toolken_agent.checkpoint`; ``from_pretrained`` takes a directory or a Hub repo id
(read through the local Hugging Face cache when offline, :mod:`toolken_agent.hub`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import torch
from huggingface_hub import ModelCard, ModelHubMixin

from .augment import reworded_requests, with_built_in_negatives, with_result_turns
from .base_model import describe_model, model_spec, recorded_model
from .calibration import as_no_call_features, negative_decisions, zero_shot_bias, zero_shot_head
from .chat_format import ChatFormat, Rendered
from .checkpoint import ToolkenConfig, check_model, check_tools, load_checkpoint, save_checkpoint
from .conversation import Conversation
from .data import NEGATIVE_EXAMPLES, call_demos, split_holdout, with_demos
from .defaults import FIT
from .errors import CheckpointError
from .features import Features, check_context, extract_features
from .gate import CallGate
from .head import ToolkenHead, joint_logits
from .hub import resolve_checkpoint
from .memo import memo
from .model import FrozenLM, load_model, training_model
from .model_card import LIBRARY_NAME, TAGS, card_text
from .priors import DEFAULT_PRIOR, build_priors
from .tool import ToolSpec
from .toolset import Toolset, as_toolset
from .training import (TrainConfig, TrainingInterrupted, TrainResult, choose_lambda, cross_fitted_mix,
                       selection_accuracy, train_gate, train_head, train_reach)


class FitProgress(Protocol):
    """What :meth:`Toolkens.fit` tells about its phases as it works (the CLI draws a bar per phase).

    ``total`` is in the phase's own unit: tokens for the frozen passes, epochs for the
    trainings, requests for the built-in no-tool requests. A phase may end short of its
    total (the lambda sweep on data too small to split does not run).
    """

    def start(self, phase: str, total: int) -> None: ...

    def advance(self, phase: str, n: int = 1, info: str = "") -> None: ...

    def end(self, phase: str) -> None: ...


@dataclass
class FitReport:
    examples: int = 0
    heldout_examples: int = 0
    positions: int = 0
    call_positions: int = 0
    tokens: int = 0
    cache_seconds: float = 0.0
    train: TrainResult = field(default_factory=TrainResult)
    prior_heldout: dict[str, float] = field(default_factory=dict)
    heldout: dict[str, float] = field(default_factory=dict)
    lambda_: float = 0.0  # the regularizer weight trained with
    lambda_sweep: dict[str, float] = field(default_factory=dict)  # held-out decision accuracy per candidate, if swept
    negatives_added: int = 0  # built-in no-tool requests added to the data
    check_examples: int = 0  # real requests added to the training share; the gate's radius is set on them
    mix: float = 1.0  # weight of the trained rows in the tool choice (ToolkenHead.mix), cross-fitted on check requests
    mix_scores: dict[str, float] = field(default_factory=dict)  # cross-fitted decision accuracy per candidate mix
    results_added: int = 0  # conversations given result turns and a reply after their calls
    reworded_added: int = 0  # reworded twins of training requests (toolken_agent.augment.reworded_requests)
    gate: dict[str, float] = field(default_factory=dict)  # the whether-to-call gate's threshold and rates
    reach: dict[str, Any] = field(default_factory=dict)  # the gate's radius around the training calls (gate.fit_reach)
    phase_seconds: dict[str, float] = field(default_factory=dict)  # wall time of each phase, in order

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON data: a rate with nothing to count (a held-out split without calls) is ``None``, not NaN."""
        return _finite({
            "examples": self.examples,
            "heldout_examples": self.heldout_examples,
            "positions": self.positions,
            "call_positions": self.call_positions,
            "tokens": self.tokens,
            "cache_seconds": round(self.cache_seconds, 3),
            "train_seconds": round(self.train.seconds, 3),
            "epochs_done": len(self.train.epoch_losses),
            "final_loss": self.train.epoch_losses[-1] if self.train.epoch_losses else None,
            "interrupted": self.train.interrupted,
            "prior_heldout": self.prior_heldout,
            "heldout": self.heldout,
            "lambda": self.lambda_,
            "lambda_sweep": self.lambda_sweep,
            "negatives_added": self.negatives_added,
            "reworded_added": self.reworded_added,
            "check_examples": self.check_examples,
            "mix": self.mix,
            "mix_scores": self.mix_scores,
            "reach": self.reach,
            "results_added": self.results_added,
            "gate": self.gate,
            "phase_seconds": {k: round(v, 3) for k, v in self.phase_seconds.items()},
        })


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by ``None`` (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


@contextlib.contextmanager
def _phase(report: FitReport, progress: FitProgress | None, name: str, total: int) -> Iterator[None]:
    """Time phase ``name`` into ``report.phase_seconds`` and tell ``progress`` where it starts and ends."""
    start = time.perf_counter()
    if progress is not None:
        progress.start(name, total)
    try:
        yield
    finally:
        report.phase_seconds[name] = report.phase_seconds.get(name, 0.0) + time.perf_counter() - start
        if progress is not None:
            progress.end(name)


class FitInterrupted(TrainingInterrupted):
    """Ctrl-C in :meth:`Toolkens.fit`: ``toolkens`` is the last good state, ``stage`` where it stopped.

    Before the final training finishes an epoch, the last good state is the priors
    (``result`` holds no epoch); during it, the last finished epoch; after it (while
    fitting the call gate and its reach), the trained toolkens as far as they got.
    """

    def __init__(self, result: TrainResult, toolkens: "Toolkens", stage: str):
        super().__init__(result)
        self.toolkens = toolkens
        self.stage = stage


def _read_check(toolkens: "Toolkens", check: Sequence[Conversation] | Features, report: FitReport,
                progress: FitProgress | None) -> Features:
    """The check requests' frozen pass (run here unless given)."""
    with _interruptible(toolkens, report, "reading the check requests"):
        if isinstance(check, Features):
            feats = check
        else:
            rendered = toolkens._rendered(check)
            with _phase(report, progress, "check requests", sum(len(r.input_ids) for r in rendered)):
                feats = extract_features(toolkens.lm, rendered, on_progress=(
                    lambda n=1: progress.advance("check requests", n, "")) if progress is not None else None)
    report.check_examples = len(torch.unique(feats.example)) if len(feats) else 0
    return feats


def _check_given_features(features: Features, conversations: int, results: bool) -> None:
    """Refuse a frozen pass handed to :meth:`Toolkens.fit` that cannot be the conversations'."""
    if results:
        raise ValueError("features given with results=True: result turns change the conversations they were run over")
    examples = torch.unique(features.example).tolist() if len(features) else []
    if examples != list(range(conversations)):
        raise ValueError(f"features hold examples {examples[:3]}..., not one per conversation (0..{conversations - 1})")


@contextlib.contextmanager
def _interruptible(toolkens: "Toolkens", report: FitReport, stage: str) -> Iterator[None]:
    """Turn Ctrl-C during ``stage`` into :class:`FitInterrupted` with the last good state.

    Only the final training used to be covered: Ctrl-C in the lambda sweep raised the
    sweep's own TrainingInterrupted, which had no toolkens to save.
    """
    try:
        yield
    except (KeyboardInterrupt, TrainingInterrupted) as exc:
        if isinstance(exc, FitInterrupted):
            raise
        report.train.interrupted = True
        toolkens.training = report.as_dict()
        raise FitInterrupted(report.train, toolkens, stage) from None


@dataclass
class Toolkens(ModelHubMixin, library_name=LIBRARY_NAME, tags=list(TAGS)):
    """The frozen ``lm``, the ``toolset`` (toolken ``k`` is ``toolset.specs[k]``) and the ``head``."""

    lm: FrozenLM
    toolset: Toolset
    head: ToolkenHead
    prior: str = DEFAULT_PRIOR
    lambda_: float = 0.01
    training: dict[str, Any] = field(default_factory=dict)
    demos: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Whether a request may call again after a result. Toolkens bound without training
    # never saw a reply after a result, so they make one call per request, then answer.
    calls_after_results: bool = True

    def __new__(cls, *args: Any, **kwargs: Any) -> "Toolkens":
        """Without the mixin's capture of ``__init__`` arguments for a ``config.json``.

        That capture deep-copies dataclass arguments (the loaded model, with its lock),
        and a checkpoint's config is its ``toolken_config.json`` (:meth:`config`).
        """
        return object.__new__(cls)

    @property
    def gate(self) -> CallGate | None:
        """Whether to call (:mod:`toolken_agent.gate`); ``None``: the head's margin decides."""
        return self.head.gate

    @property
    def chat_format(self) -> ChatFormat:
        if not hasattr(self, "_format"):
            self._format = ChatFormat(self.lm.tokenizer, self.toolset.names, self.lm.vocab_size)
        return self._format

    @classmethod
    def from_priors(cls, lm: FrozenLM, toolset: Toolset, *, prior: str = DEFAULT_PRIOR, bias: bool = True,
                    seed: int = 0, lambda_: float = 0.01, calibrate: bool = False) -> "Toolkens":
        """Untrained toolkens: each row is its tool's prior embedding.

        ``calibrate`` (with ``bias``) sets each bias so that the toolken stays quiet on
        requests that need no tool (:func:`~toolken_agent.calibration.zero_shot_bias`);
        without it a prior row's logit sits on an arbitrary scale next to the words'.
        """
        head = ToolkenHead(build_priors(lm, toolset.specs, prior, seed=seed), bias=bias)
        if bias and calibrate:
            with torch.no_grad():
                head.bias.copy_(zero_shot_bias(lm, head.weight))
        head.anchor_bias()
        return cls(lm, toolset, head, prior=prior, lambda_=lambda_)

    @classmethod
    def bind(cls, lm: FrozenLM, toolset: Toolset,
             trained: tuple[ToolkenHead, ToolkenConfig] | None = None, *, where: str = "checkpoint") -> "Toolkens":
        """Toolkens for exactly ``toolset``: trained rows where ``trained`` has the tool, zero-shot rows elsewhere.

        The one way a head is put together for use (the CLI's ``chat``, the REPL, the
        LangChain model): a checkpoint made for another model, or a tool changed since
        its toolken was trained, is refused the same way everywhere. Zero-shot rows are
        :func:`~toolken_agent.calibration.zero_shot_head`'s; a head of zero-shot rows
        only keeps its standardized tool choice (``mix = 0``), one with trained rows the
        checkpoint's mix and gate.
        """
        if trained is None:
            return cls(lm, toolset, zero_shot_head(lm, toolset.specs), prior=DEFAULT_PRIOR, calls_after_results=False)
        head, config = trained
        check_model(config, lm.fingerprint, lm.hidden_size, where=where)
        check_tools(config, toolset.specs, where=where)
        untrained = [s for s in toolset.specs if s.name not in config.tool_names]
        fresh = zero_shot_head(lm, untrained, prior=config.prior)

        def row(spec: ToolSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
            """(row, prior row, bias, prior bias): an untrained tool's two ends of the mix are its zero-shot row."""
            if spec.name in config.tool_names:
                k = config.tool_names.index(spec.name)
                bias = head.bias[k].detach() if head.bias is not None else torch.zeros(())
                return head.weight[k].detach(), head.prior[k], bias, head.prior_bias[k] if head.bias is not None else bias
            k = untrained.index(spec)
            return fresh.weight[k].detach(), fresh.weight[k].detach(), fresh.bias[k].detach(), fresh.bias[k].detach()

        rows, priors, biases, prior_biases = zip(*[row(s) for s in toolset.specs]) if toolset.specs else ((),) * 4
        d = lm.hidden_size
        out = ToolkenHead(torch.stack(priors) if priors else torch.zeros(0, d), bias=True, mix=head.mix)
        with torch.no_grad():
            if rows:
                out.weight.copy_(torch.stack(rows))
                out.bias.copy_(torch.stack(biases))
                out.prior_bias.copy_(torch.stack(prior_biases))
        out.gate = head.gate
        return cls(lm, with_demos(toolset, config.demos), out, prior=config.prior, lambda_=config.lambda_,
                   training=config.training, demos=config.demos)

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *, toolkens: bool = True) -> torch.Tensor:
        """Joint logits ``(B, T, V + n_tools)`` in fp32 for ``input_ids`` ``(B, T)``."""
        hidden = self.lm.final_hidden(input_ids, attention_mask)
        return joint_logits(self.lm.vocab_logits(hidden), self.head(hidden), toolkens=toolkens)

    # -- training ---------------------------------------------------------------------
    def features(self, conversations: Sequence[Conversation], *,
                 on_progress: Callable[[int], None] | None = None) -> Features:
        """Render ``conversations`` with training targets and run the frozen pass once.

        ``on_progress`` hears the tokens done as it goes.
        """
        return extract_features(self.lm, self._rendered(conversations), on_progress=on_progress)

    def _render(self, conversations: Sequence[Conversation]) -> list[Rendered]:
        return [self.chat_format.render(c.messages, train=True) for c in conversations]

    def _rendered(self, conversations: Sequence[Conversation]) -> list[Rendered]:
        rendered = self._render(conversations)
        check_context(rendered, conversations, self.lm)
        return rendered

    def _rendered_within_context(self, conversations: Sequence[Conversation]) -> list[Rendered]:
        """Rendered, leaving out any longer than the model's context: for data made here, which no user can shorten."""
        limit = self.lm.context_length
        return [r for r in self._render(conversations) if limit is None or len(r.input_ids) <= limit]

    def built_in_negative_features(self, negatives: Sequence[Conversation], *,
                                   on_progress: Callable[[int], None] | None = None) -> Features:
        """The frozen pass over the built-in negatives, run once per model and toolset.

        Apart from the user's conversations, so that a caller handing :meth:`fit` their
        frozen pass (a benchmark) trains on the same rows, in the same order, as ``train``.
        """
        return memo(self.lm, f"built_in_negative_features:{len(negatives)}:{','.join(self.toolset.names)}",
                    lambda: self.features(negatives, on_progress=on_progress))

    @classmethod
    def fit(
        cls,
        lm: FrozenLM,
        toolset: Toolset,
        conversations: Sequence[Conversation],
        *,
        prior: str = FIT.prior,
        bias: bool = FIT.bias,
        calibrate: bool = FIT.calibrate,
        lambdas: Sequence[float] | None = FIT.lambdas,
        config: TrainConfig = TrainConfig(),
        holdout: float = FIT.holdout,
        negatives: bool = FIT.negatives,
        results: bool = FIT.results,
        reword: bool = FIT.reword,
        call_false_positives: float | None = FIT.call_false_positives,
        call_reach_miss: float | None = FIT.call_reach_miss,
        check: Sequence[Conversation] | Features = (),
        features: Features | None = None,
        progress: FitProgress | None = None,
    ) -> tuple["Toolkens", FitReport]:
        """Build priors, cache features, train on all but a held-out share, report accuracy.

        The defaults are ``toolken-agent train``'s, both read from
        :data:`toolken_agent.defaults.FIT` (the benchmark's best method, ``ours`` in
        ``docs/benchmarks``): LM-head+description priors, biases calibrated as for
        zero-shot toolkens (``calibrate``), and the regularizer weight chosen among
        ``lambdas`` on a split of the training share
        (:func:`~toolken_agent.training.choose_lambda`); ``lambdas=None`` trains with
        ``config.lambda_``. With ``negatives``, data in which every request needed a tool gets the built-in
        no-tool requests (:func:`~toolken_agent.augment.with_built_in_negatives`); with
        ``results``, every call without a result gets one and a reply in words after it
        (:func:`~toolken_agent.augment.with_result_turns`), so the reply after a result
        is trained too. With ``reword``, each request of the training share also trains as
        a reworded twin (:func:`~toolken_agent.augment.reworded_requests`); the held-out
        share and the lambda sweep see none. ``call_false_positives``: a whether-to-call gate is fitted and
        thresholded for that false-positive rate on held-out decisions
        (:func:`~toolken_agent.training.train_gate`); ``None`` leaves the decision to
        the head's margin. ``call_reach_miss``: the gate also gets a radius around the
        training calls that at most this share of held-out calls (the ``check`` requests
        where given) fall outside, when there are enough of them to promise it
        (:func:`~toolken_agent.gate.fit_reach`); ``None``: no radius.
        ``check``: a few real requests with their calls, when the training texts are
        unlike them (synthetic), or their frozen pass (:class:`Features`) where the
        caller already ran it. They join the training share (real requests teach more
        than synthetic ones), the gate's radius is set on them, each measured against
        the other examples' calls (:func:`~toolken_agent.gate.fit_reach`), and they
        choose how far the tool choice leans toward the priors, cross-fitted so that no
        request scores a head trained on it (:func:`~toolken_agent.training.cross_fitted_mix`).
        ``progress`` hears each phase start, advance and end (:class:`FitProgress`);
        ``report.phase_seconds`` keeps each phase's time.
        ``features``: the frozen pass over ``conversations`` (example ``i`` is
        ``conversations[i]``) where the caller already ran it, as a benchmark fitting
        many heads on one data set does. The built-in negatives are run apart either way
        and appended. Not with ``results``, which changes the conversations.

        ``lm`` on llama.cpp: the frozen passes run on the same weights on transformers
        (:func:`~toolken_agent.model.training_model`) and the toolkens returned decode on ``lm``.

        Raises :class:`FitInterrupted` (a :class:`~toolken_agent.training.TrainingInterrupted`)
        on Ctrl-C at any stage, with the last good state as ``exc.toolkens``.
        """
        if features is not None:
            _check_given_features(features, len(conversations), results)
        decoding_lm, lm = lm, training_model(lm)  # the frozen pass runs on transformers; the toolkens decode on lm
        report = FitReport()

        def advance(phase: str) -> Callable[..., None]:
            return lambda n=1, info="": progress.advance(phase, n, info) if progress is not None else None

        if (bias and calibrate) or call_false_positives is not None:
            with _phase(report, progress, "no-tool requests", len(NEGATIVE_EXAMPLES)):  # once per loaded model
                negative_decisions(lm, on_request=advance("no-tool requests"))  # the calibration and gate read these
        toolkens = cls.from_priors(lm, toolset, prior=prior, bias=bias, seed=config.seed, lambda_=config.lambda_,
                                   calibrate=calibrate)
        given = len(conversations)
        conversations = with_built_in_negatives(conversations) if negatives else list(conversations)
        report.negatives_added = len(conversations) - given
        train_idx, held_idx = split_holdout(len(conversations), holdout, seed=config.seed)
        twins = reworded_requests([conversations[i] for i in train_idx], seed=config.seed) if reword else []
        if results:
            with _interruptible(toolkens, report, "adding result turns"), _phase(report, progress, "result turns", 0):
                augmented = with_result_turns([*conversations, *twins], toolset)  # one run per distinct call
            report.results_added = sum(a is not c for a, c in zip(augmented, conversations))
            conversations, twins = augmented[:len(conversations)], augmented[len(conversations):]

        def count_tokens(n: int) -> None:
            report.tokens += n
            advance("caching")(n)

        with _interruptible(toolkens, report, "caching features"):
            feats = features
            # One phase, with its total known up front, for both frozen passes: the user's
            # conversations and the built-in negatives (otherwise a pass with no bar).
            rendered = toolkens._rendered(conversations[:given]) if features is None else []
            added = toolkens._rendered(conversations[given:]) if report.negatives_added else []
            reworded = toolkens._rendered_within_context(twins)
            twin_feats = None
            if features is None or added or reworded:
                with _phase(report, progress, "caching",
                            sum(len(r.input_ids) for r in [*rendered, *added, *reworded])):
                    if features is None:
                        feats = extract_features(lm, rendered, on_progress=count_tokens)
                    if added:
                        feats = feats.extended(toolkens.built_in_negative_features(conversations[given:],
                                                                                   on_progress=count_tokens))
                    twin_feats = extract_features(lm, reworded, on_progress=count_tokens) if reworded else None
        report.reworded_added = len(reworded)
        report.cache_seconds = report.phase_seconds.get("caching", 0.0)
        train_feats = feats.for_examples(train_idx)
        checked = check_feats = None  # the check requests' rows (as numbered in train_feats)
        # Without the check requests: the cross-fitted mix adds one fold at a time.
        base_train = train_feats.extended(twin_feats) if twin_feats is not None else train_feats
        if len(check):
            check_feats = _read_check(toolkens, check, report, progress)
            offset = int(train_feats.example.max()) + 1 if len(train_feats) else 0
            train_feats = train_feats.extended(check_feats)
            checked = train_feats.for_examples([offset + int(e) for e in torch.unique(check_feats.example)])
        swept = train_feats  # the lambda sweep splits by example: without the twins, none is scored beside its twin
        if twin_feats is not None:
            train_feats = train_feats.extended(twin_feats)
        report.examples, report.heldout_examples = len(train_idx), len(held_idx)
        report.positions = len(train_feats)
        report.call_positions = int((train_feats.tool_target >= 0).sum())
        held_feats = feats.for_examples(held_idx) if held_idx else None
        if held_feats is not None:
            report.prior_heldout = selection_accuracy(toolkens.head, held_feats)
        quiet = as_no_call_features(lm, *negative_decisions(lm)) if call_false_positives is not None else None
        if lambdas:
            sweep_tick = advance("lambda sweep")
            with _interruptible(toolkens, report, "choosing lambda"), \
                    _phase(report, progress, "lambda sweep", len(lambdas) * config.epochs):
                chosen, report.lambda_sweep = choose_lambda(lambda: copy.deepcopy(toolkens.head), swept, config,
                                                            lambdas=lambdas,
                                                            on_epoch=lambda epoch, loss: sweep_tick())
            config = replace(config, lambda_=chosen)
            toolkens.lambda_ = chosen
        report.lambda_ = config.lambda_
        if check_feats is not None:
            with _interruptible(toolkens, report, "choosing the mix"), \
                    _phase(report, progress, "mix", 2 * config.epochs):
                report.mix, report.mix_scores = cross_fitted_mix(lambda: copy.deepcopy(toolkens.head), base_train,
                                                                 check_feats, config,
                                                                 on_epoch=lambda epoch, loss: advance("mix")())
        reach_on = checked if checked is not None else held_feats  # real requests where given, else the held-out share

        def fit_whether() -> None:
            """The call gate and its reach, on the head as trained so far (with its mix, as it will decode)."""
            toolkens.head.gate, report.gate = train_gate(toolkens.head, train_feats, held_feats, quiet=quiet,
                                                         target=call_false_positives)
            if call_reach_miss is not None and toolkens.head.gate is not None and reach_on is not None:
                report.reach = train_reach(toolkens.head, train_feats, reach_on, miss=call_reach_miss, seed=config.seed,
                                           held_in_train=checked is not None)

        on_epoch = advance("training")
        try:
            with _phase(report, progress, "training", config.epochs):
                report.train = train_head(toolkens.head, train_feats, config,
                                          on_epoch=lambda epoch, loss: on_epoch(1, f"loss {loss:.4f}"))
        except TrainingInterrupted as exc:
            report.train = exc.result
            toolkens.head.mix = report.mix
            if call_false_positives is not None:  # the gate of the kept epoch: a second's work, not lost
                fit_whether()
            toolkens.training = report.as_dict()
            raise FitInterrupted(exc.result, toolkens, "training") from None
        toolkens.head.mix = report.mix  # set after training: the loss trains the rows themselves, not the blend
        if call_false_positives is not None:
            with _interruptible(toolkens, report, "fitting the call gate"), _phase(report, progress, "call gate", 0):
                fit_whether()
        if held_feats is not None:  # the toolkens as saved: gate and reach included
            report.heldout = selection_accuracy(toolkens.head, held_feats)
        toolkens.training = report.as_dict()
        toolkens.demos = call_demos([conversations[i] for i in train_idx])
        toolkens.toolset = with_demos(toolkens.toolset, toolkens.demos)
        return (toolkens if decoding_lm is lm else replace(toolkens, lm=decoding_lm)), report

    # -- persistence ------------------------------------------------------------------
    def config(self) -> ToolkenConfig:
        record = describe_model(self.lm.spec)
        return ToolkenConfig(
            model=model_spec(record),
            model_name=self.lm.name,
            model_fingerprint=self.lm.fingerprint,
            hidden_size=self.lm.hidden_size,
            tools=ToolkenConfig.tools_of(self.toolset.specs),
            prior=self.prior,
            lambda_=self.lambda_,
            bias=self.head.bias is not None,
            training=dict(self.training),
            toolset=self.toolset.source,
            demos=self.demos,
            mix=self.head.mix,
            call_threshold=self.gate.threshold if self.gate is not None else None,
            base_model=record,
        )

    def save(self, path: str | Path, *, ref: str | None = None) -> Path:
        """Write the checkpoint directory ``path`` atomically, with its model card; ``ref``: how the card says to load it."""
        config = self.config()
        card = card_text(config, {s.name: s.description for s in self.toolset}, ref=ref or Path(path).name)
        return save_checkpoint(path, self.head, config, card=card)

    def save_pretrained(self, save_directory: str | Path, *, config: Any = None, repo_id: str | None = None,
                        push_to_hub: bool = False, model_card_kwargs: dict[str, Any] | None = None,
                        **push_to_hub_kwargs: Any) -> str | None:
        """Save as a checkpoint directory (:meth:`save`, model card included); ``push_to_hub=True`` uploads it too.

        Not the mixin's own ``save_pretrained``: that one deletes a ``config.json`` found
        in the directory and writes one of ``__init__`` arguments, before anything checks
        that the directory holds a checkpoint. A toolken checkpoint's config is its
        ``toolken_config.json``, written atomically with the weights.
        """
        if config is not None:
            raise ValueError("a toolken checkpoint's config is its own toolken_config.json; pass no config")
        ref = (model_card_kwargs or {}).get("ref") or repo_id or Path(save_directory).name
        self.save(save_directory, ref=ref)
        if push_to_hub:
            return self.push_to_hub(repo_id or Path(save_directory).name, model_card_kwargs=model_card_kwargs,
                                    **push_to_hub_kwargs)
        return None

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload the checkpoint to the Hub repo ``repo_id`` (huggingface_hub's ``ModelHubMixin.push_to_hub``).

        The card uploaded with it says to load it by ``repo_id``; returns the commit's URL.
        """
        card_kwargs = {"ref": repo_id, **(kwargs.pop("model_card_kwargs", None) or {})}
        return super().push_to_hub(repo_id, model_card_kwargs=card_kwargs, **kwargs)

    def generate_model_card(self, *args: Any, ref: str = "toolkens", **kwargs: Any) -> ModelCard:
        """The model card of these toolkens (:mod:`toolken_agent.model_card`)."""
        return ModelCard(card_text(self.config(), {s.name: s.description for s in self.toolset}, ref=ref))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, tools: Any = None,
                        lm: FrozenLM | None = None, model: str | None = None, dtype: str | None = "auto",
                        trust_toolset: bool = False, revision: str | None = None, cache_dir: str | Path | None = None,
                        force_download: bool = False, local_files_only: bool = False,
                        token: str | bool | None = None) -> "Toolkens":
        """Load toolkens from a checkpoint directory or a Hub repo id, for ``tools``.

        ``tools``: a :class:`~toolken_agent.toolset.Toolset`, a toolset reference as
        ``--tools`` takes, or a list of tools; a checkpoint holds weights, never tools
        (see :meth:`load`). A repo id is read through the local Hugging Face cache, and
        downloaded only when the Hub can be reached (:func:`toolken_agent.hub.resolve_checkpoint`).
        Without ``model`` or ``lm``, the base model the checkpoint records is loaded.
        """
        return cls._from_pretrained(model_id=str(pretrained_model_name_or_path), revision=revision,
                                    cache_dir=cache_dir, force_download=force_download,
                                    local_files_only=local_files_only, token=token, tools=tools, lm=lm,
                                    model=model, dtype=dtype, trust_toolset=trust_toolset)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: str | Path | None,
                         force_download: bool, local_files_only: bool, token: str | bool | None,
                         tools: Any = None, lm: FrozenLM | None = None, model: str | None = None,
                         dtype: str | None = "auto", trust_toolset: bool = False, engine: str | None = None) -> "Toolkens":
        path = resolve_checkpoint(model_id, revision=revision, cache_dir=cache_dir, force_download=force_download,
                                  local_files_only=local_files_only, token=token)
        toolset = as_toolset(tools) if tools is not None else None
        return cls.load(path, toolset, lm=lm, model=model, dtype=dtype, trust_toolset=trust_toolset, engine=engine)

    @classmethod
    def load(cls, path: str | Path, toolset: Toolset | None = None, *, lm: FrozenLM | None = None, model: str | None = None,
             dtype: str | None = "auto", trust_toolset: bool = False, engine: str | None = None) -> "Toolkens":
        """Load a checkpoint for ``toolset``, refusing another model or changed tools.

        The toolset must hold exactly the trained tools (any order); toolkens are
        reordered to match it. A checkpoint is data and never chooses code: without
        ``toolset`` it is refused, unless ``trust_toolset`` allows looking up the
        toolset it names among the *registered* ones (never a file or a module path,
        which could be a file shipped beside a downloaded checkpoint).
        """
        head, config = load_checkpoint(path)
        if toolset is None:
            recorded = f" (it was trained with {config.toolset!r})" if config.toolset else ""
            if not trust_toolset:
                raise CheckpointError(f"{path} holds weights, not tools: pass the toolset it was trained for{recorded}")
            from .toolset import load_registered_toolset

            toolset = load_registered_toolset(config.toolset)
        lm = lm or load_model(model or recorded_model(config.base_model, config.model, where=str(path)), dtype=dtype,
                              engine=engine)
        check_model(config, lm.fingerprint, lm.hidden_size, where=str(path))
        check_tools(config, toolset.specs, where=str(path))
        missing = [n for n in toolset.names if n not in config.tool_names]
        extra = [n for n in config.tool_names if n not in toolset.names]
        if missing or extra:
            detail = "; ".join(p for p in (f"untrained: {', '.join(missing)}" if missing else "",
                                           f"not in the toolset: {', '.join(extra)}" if extra else "") if p)
            raise CheckpointError(f"{path} was trained for a different toolset ({detail})")
        head = head.select([config.tool_names.index(n) for n in toolset.names])
        return cls(lm, with_demos(toolset, config.demos), head, prior=config.prior, lambda_=config.lambda_,
                   training=config.training, demos=config.demos)
