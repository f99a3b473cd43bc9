"""Toolken methods side by side on cached features: the heart of the benchmark.

Every toolken method shares the frozen LM, so each data set is run through it once
(:func:`cached_features`, kept on disk per model) and every method, seed and
training-set size is then a few seconds of head training on the same tensors. Each
method is a configuration of the product's own constructors, never a re-assembly of
their parts: a trained method is a set of :meth:`Toolkens.fit` keywords, the untrained
one is :meth:`Toolkens.bind` (what ``ChatToolken`` and ``chat --tools`` do for a tool
without a checkpoint). The methods differ only where the papers differ:

==============  ====================  ===========  ======  ================================
method          prior (initial rows)  lambda       bias    trained
==============  ====================  ===========  ======  ================================
zero-shot       lm-head+description   n/a          calib.  no: ``Toolkens.bind``, rows
                                                           calibrated on negatives, tools
                                                           ranked by standardized score
toolkengpt      random                0            no      yes (ToolkenGPT, Hao et al. 2023)
paper           name (hidden mean)    0.01         no      yes (Li et al. 2025)
ours            lm-head+description   chosen on a  calib.  yes: ``fit``'s defaults, as
                                      train split          ``toolken-agent train`` (the
                                                           16 built-in no-tool requests,
                                                           the call gate and its radius)
==============  ====================  ===========  ======  ================================

All trained methods see the same positions with the same joint loss (calls and ordinary
text, so toolkens learn when *not* to fire); only initialization, regularizer, bias and
``ours``' 16 extra requests and gate differ. Every fit trains on all of its data
(``holdout=0``) and without result turns (``results=False``: the suite scores where a
call starts, not the reply after a result). ``ours`` picks lambda from ``LAMBDAS`` by
decision accuracy on a 20% split of its training data, once per data set with the first
seed (:func:`toolken_agent.training.choose_lambda`); never on test data.

Scoring happens where the toolken decides (teacher-forced test turns):

* ``select``: at a test conversation's first gold call, the gold toolken beats every
  word and every other toolken (what ``tool_choice="auto"`` would do there);
* ``choice``: the gold toolken beats the other toolkens (``tool_choice="required"``;
  ToolkenGPT's KAMEL figure);
* ``no_call``: at decision points whose gold is text (the reply after a tool result,
  a turn without a call), no toolken fires.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from toolken_agent.calibration import as_no_call_features, reply_start_decisions
from toolken_agent.chat_format import ChatFormat
from toolken_agent.conversation import Conversation
from toolken_agent.defaults import FIT
from toolken_agent.features import Features, extract_features
from toolken_agent.head import ToolkenHead
from toolken_agent.model import FrozenLM
from toolken_agent.store import cache_dir
from toolken_agent.tool import ToolSpec
from toolken_agent.toolkens import FitReport, Toolkens
from toolken_agent.toolset import Toolset
from toolken_agent.training import LAMBDAS, TrainConfig, no_call_rate, predict_decisions


@dataclass(frozen=True)
class Method:
    """A benchmark method: the :meth:`Toolkens.fit` keywords it trains with, or ``None``: bound untrained."""

    name: str
    fit: Mapping[str, Any] | None = field(default_factory=dict)  # over fit's defaults
    lambda_: float | None = None  # None: fit's sweep over LAMBDAS
    check: bool = False  # real check questions as Toolkens.fit(check=...), where the data set has spare ones
    check_as_data: bool = False  # the same check questions added to the training data (a baseline given what ours sees)

    @property
    def trained(self) -> bool:
        return self.fit is not None

    def describe(self) -> str:
        if self.fit is None:
            return "lm-head+description rows, calibrated bias, standardized tool choice, no training (Toolkens.bind)"
        settings = {**_fit_defaults(), **self.fit}
        bias = "calibrated bias" if settings["bias"] and settings["calibrate"] else ("bias" if settings["bias"] else "no bias")
        lam = "lambda chosen on train split" if self.lambda_ is None else f"lambda {self.lambda_:g}"
        return (f"{settings['prior']} prior, {lam}, {bias}" + (", built-in no-tool requests" if settings["negatives"] else "")
                + (", call gate" if settings["call_false_positives"] is not None else "")
                + (", the real check questions added to the training data, the gate's radius set on them"
                   " and the tool-choice mix cross-fitted on them" if self.check else "")
                + (", real check questions added to the training data" if self.check_as_data else ""))


def _fit_defaults() -> dict[str, Any]:
    return asdict(FIT)


METHODS = (
    Method("zero-shot", None),
    Method("toolkengpt", dict(prior="random", bias=False, calibrate=False, negatives=False, reword=False,
                              call_false_positives=None),
           lambda_=0.0),
    Method("paper", dict(prior="name", bias=False, calibrate=False, negatives=False, reword=False,
                         call_false_positives=None),
           lambda_=0.01),
    Method("ours", {}, check=True),
    # The baselines given the real check questions ours trains on, as training data too.
    Method("toolkengpt+check", dict(prior="random", bias=False, calibrate=False, negatives=False, reword=False,
                                    call_false_positives=None),
           lambda_=0.0, check_as_data=True),
    Method("paper+check", dict(prior="name", bias=False, calibrate=False, negatives=False, reword=False,
                               call_false_positives=None),
           lambda_=0.01, check_as_data=True),
)


# -- features, once per model and data set -------------------------------------------------
def _features_key(lm: FrozenLM, rendered: Sequence[Any]) -> str:
    """The weights, the engine and precision that ran them, and the rendered tokens.

    The fingerprint is the same for the same weights on every engine and dtype (so a
    checkpoint binds anywhere); their hidden states are not, so features are kept apart.
    """
    h = hashlib.sha256(lm.fingerprint.encode())
    h.update(f"{lm.engine} {lm.precision}".encode())
    for r in rendered:
        h.update(json.dumps([r.input_ids, r.positions, r.targets, r.decisions]).encode())
    return h.hexdigest()[:20]


def cached_features(lm: FrozenLM, specs: Sequence[ToolSpec], conversations: Sequence[Conversation]) -> tuple[Features, float]:
    """Features for ``conversations`` (rendered with training targets) and the seconds spent.

    Kept under the cache dir keyed by model fingerprint and rendered tokens, so a rerun
    (another method, a report) never runs the LM again; seconds are 0.0 on a cache hit.
    """
    import time

    fmt = ChatFormat(lm.tokenizer, [s.name for s in specs], lm.vocab_size)
    rendered = [fmt.render(c.messages, train=True) for c in conversations]
    path = cache_dir() / "bench-features" / f"{_features_key(lm, rendered)}.safetensors"
    if path.exists():
        tensors = load_file(path)
        return Features(**tensors, vocab_size=lm.vocab_size), 0.0
    start = time.perf_counter()
    feats = extract_features(lm, rendered)
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # two runs may cache the same data at once
    save_file({f.name: getattr(feats, f.name).contiguous() for f in fields(feats) if f.name != "vocab_size"}, tmp)
    tmp.replace(path)
    return feats, seconds


# -- toolkens --------------------------------------------------------------------------------
def fit(lm: FrozenLM, toolset: Toolset, method: Method, conversations: Sequence[Conversation], feats: Features, *,
        seed: int, epochs: int = 20, lambda_: float | None = None,
        check: Features | None = None, check_conversations: Sequence[Conversation] = ()) -> tuple[Toolkens, FitReport | None]:
    """``method``'s toolkens for ``toolset``, trained on ``conversations`` (their frozen pass: ``feats``).

    ``lambda_`` fixes the regularizer weight where the method would sweep (the run
    sweeps once per data set, with its first seed); ``check``: real questions' features,
    for ``ours`` (``Toolkens.fit(check=...)``: trained on, the gate's radius set on them), or for a
    baseline that adds them to its data (``check_conversations``, their conversations). No report for ``zero-shot``.
    """
    if method.check_as_data:
        if check is None or not check_conversations:
            raise ValueError(f"{method.name} needs the check questions and their features")
        conversations, feats = [*conversations, *check_conversations], feats.extended(check)
    if method.fit is None:
        return Toolkens.bind(lm, toolset), None
    lam = lambda_ if lambda_ is not None else method.lambda_
    config = TrainConfig(epochs=epochs, lambda_=lam if lam is not None else TrainConfig.lambda_, seed=seed)
    return Toolkens.fit(lm, toolset, conversations, features=feats, holdout=0.0, results=False, config=config,
                        lambdas=LAMBDAS if lam is None else None,
                        check=check if method.check and check is not None else (), **method.fit)


# -- scoring -------------------------------------------------------------------------------
def first_call_rows(feats: Features) -> torch.Tensor:
    """Indices of each example's first gold-call decision row."""
    calls = torch.nonzero((feats.tool_target >= 0) & feats.decision).flatten()
    seen: set[int] = set()
    keep = []
    for row in calls.tolist():
        ex = int(feats.example[row])
        if ex not in seen:
            seen.add(ex)
            keep.append(row)
    return torch.tensor(keep, dtype=torch.long)


@torch.no_grad()
def score(head: ToolkenHead, feats: Features, *, all_calls: bool = False) -> dict[str, float]:
    """``select``, ``choice`` (first call of each example, or every call) and ``no_call``."""
    if all_calls:
        call_rows = torch.nonzero((feats.tool_target >= 0) & feats.decision).flatten()
    else:
        call_rows = first_call_rows(feats)
    text_rows = torch.nonzero((feats.tool_target < 0) & feats.decision).flatten()
    out: dict[str, float] = {"calls": len(call_rows), "text_decisions": len(text_rows)}
    if len(call_rows):
        calls = feats.subset(call_rows)
        index = head(calls.hidden).argmax(dim=-1)
        called = predict_decisions(head, calls)  # the gate decides whether, where the head has one
        gold = calls.tool_target
        out["select"] = float((called == gold).float().mean())
        out["choice"] = float((index == gold).float().mean())
        out["fired"] = float((called >= 0).float().mean())
    if len(text_rows):
        text = feats.subset(text_rows)
        out["no_call"] = no_call_rate(head, text)
    return out


# -- subsets ---------------------------------------------------------------------------------
def examples_per_tool(conversations: Sequence[Conversation], k: int, *, seed: int) -> list[int]:
    """Indices of up to ``k`` training conversations per tool (by first call), seeded."""
    by_tool: dict[str, list[int]] = {}
    for i, c in enumerate(conversations):
        first = next((call.name for m in c.messages for call in m.tool_calls), None)
        by_tool.setdefault(first or "", []).append(i)
    rng = random.Random(seed)
    chosen: list[int] = []
    for name, idx in sorted(by_tool.items()):
        if name:
            chosen.extend(rng.sample(idx, min(k, len(idx))))
    return sorted(chosen)


def select_examples(feats: Features, indices: Sequence[int]) -> Features:
    """Rows of the given examples, renumbered ``0..len(indices)-1`` in that order."""
    sub = feats.for_examples(indices)
    remap = torch.full((int(feats.example.max()) + 1,), -1, dtype=torch.long)
    remap[torch.as_tensor(list(indices), dtype=torch.long)] = torch.arange(len(indices))
    sub.example = remap[sub.example]
    return sub


def cap_per_tool(records: Sequence[dict], cap: int, *, seed: int = 0) -> list[dict]:
    """At most ``cap`` records per tool (by first call), in their original order, seeded."""
    by_tool: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        first = next((c["function"]["name"] for m in r["messages"] for c in (m.get("tool_calls") or [])), "")
        by_tool.setdefault(first, []).append(i)
    rng = random.Random(seed)
    keep = sorted(i for idx in by_tool.values() for i in (idx if len(idx) <= cap else rng.sample(idx, cap)))
    return [records[i] for i in keep]


def end_to_end(toolkens: Toolkens, tests: Sequence[Conversation], *, tool_choice: str = "auto",
               max_new_tokens: int = 64) -> dict[str, Any]:
    """Decode the test turns for real (ToolkenGPT's protocol: calls may fire mid-text), tools run.

    Tool selection is then the first call anywhere in the reply; answer accuracy whether
    the final text states the gold answer. The demos the decoder shows while the LM
    writes arguments are the ones :meth:`Toolkens.fit` kept from the training conversations.
    """
    from toolken_agent.decoding import DecodeConfig
    from toolken_agent.evaluation import evaluate

    config = DecodeConfig(max_new_tokens=max_new_tokens, calls_anywhere=True, tool_choice=tool_choice, max_calls=4)
    return evaluate(toolkens, tests, config).as_dict()


def reply_start_features(lm: FrozenLM, questions: Sequence[str]) -> Features:
    """Features at the start of a reply to each question, as text decisions (no call is right).

    Used with requests from *another* benchmark (KAMEL questions for the math tools,
    GSM8K questions for KAMEL's and VirtualHome's): a toolken that fires there misfires.
    """
    return as_no_call_features(lm, *reply_start_decisions(lm, questions))
