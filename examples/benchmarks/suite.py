"""Toolken methods side by side on cached features: the heart of the benchmark.

Every toolken method shares the frozen LM, so each data set is run through it once
(:func:`cached_features`, kept on disk per model) and every method, seed and
training-set size is then a few seconds of head training on the same tensors. The
methods differ only where the papers differ:

==============  ====================  ===========  ======  ================================
method          prior (initial rows)  lambda       bias    trained
==============  ====================  ===========  ======  ================================
zero-shot       lm-head+description   n/a          calib.  no: prior rows, bias read off
                                                           negatives (what ``bind_tools``
                                                           does for an untrained tool)
toolkengpt      random                0            no      yes (ToolkenGPT, Hao et al. 2023)
paper           name (hidden mean)    0.01         no      yes (Li et al. 2025)
ours            lm-head+description   chosen on a  calib.  yes, from zero-shot's rows
                                      train split          and bias, plus the 16 built-in
                                                           no-tool requests
==============  ====================  ===========  ======  ================================

All trained methods see the same positions with the same joint loss (calls and ordinary
text, so toolkens learn when *not* to fire); only initialization, regularizer, bias and
``ours``' 16 extra requests differ. ``ours`` picks lambda from ``LAMBDAS`` by decision
accuracy (calls and no-calls) on a 20% split of its training data (an exact tie goes
to the larger lambda); never on test data. This is what
``toolken-agent train`` does by default (:func:`toolken_agent.training.choose_lambda`,
:func:`toolken_agent.augment.with_built_in_negatives`).

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
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from toolken_agent.calibration import as_no_call_features, negative_decisions, reply_start_decisions, zero_shot_bias
from toolken_agent.chat_format import ChatFormat
from toolken_agent.conversation import Conversation
from toolken_agent.augment import negative_conversations
from toolken_agent.features import Features, extract_features
from toolken_agent.head import ToolkenHead
from toolken_agent.memo import memo
from toolken_agent.model import FrozenLM
from toolken_agent.store import cache_dir
from toolken_agent.priors import build_priors
from toolken_agent.tool import ToolSpec
from toolken_agent.training import LAMBDAS, TrainConfig, choose_mix, no_call_rate, predict_decisions, train_gate, train_head
from toolken_agent.training import choose_lambda as training_choose_lambda


@dataclass(frozen=True)
class Method:
    name: str
    prior: str
    lambda_: float | None  # None: chosen from LAMBDAS on a split of the training data
    bias: bool
    trained: bool = True
    calibrated: bool = False  # bias starts at the zero-shot calibration (else 0)
    negatives: bool = False  # trained with the built-in no-tool requests added
    check: bool = False  # tool-choice mix with the priors chosen on real questions, where the data set has spare ones
    gate: bool = False  # a whether-to-call gate fitted on the training decisions (toolken_agent.gate)

    def describe(self) -> str:
        bias = "calibrated bias" if self.calibrated else ("bias" if self.bias else "no bias")
        if not self.trained:
            return f"{self.prior} prior, {bias}, no training"
        lam = "lambda chosen on train split" if self.lambda_ is None else f"lambda {self.lambda_:g}"
        return (f"{self.prior} prior, {lam}, {bias}" + (", built-in no-tool requests" if self.negatives else "")
                + (", tool choice mixed with the priors as real check questions prefer" if self.check else ""))


METHODS = (
    Method("zero-shot", "lm-head+description", None, True, trained=False, calibrated=True),
    Method("toolkengpt", "random", 0.0, False),
    Method("paper", "name", 0.01, False),
    Method("ours", "lm-head+description", None, True, calibrated=True, negatives=True, check=True, gate=True),
)


# -- features, once per model and data set -------------------------------------------------
def _features_key(lm: FrozenLM, rendered: Sequence[Any]) -> str:
    h = hashlib.sha256(lm.fingerprint.encode())
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


# -- heads ---------------------------------------------------------------------------------
def initial_head(lm: FrozenLM, specs: Sequence[ToolSpec], method: Method, seed: int) -> ToolkenHead:
    head = ToolkenHead(build_priors(lm, specs, method.prior, seed=seed), bias=method.bias)
    if method.calibrated:
        with torch.no_grad():
            head.bias.copy_(zero_shot_bias(lm, head.weight))
    head.anchor_bias()
    return head




def training_features(lm: FrozenLM, specs: Sequence[ToolSpec], method: Method, feats: Features) -> Features:
    """``feats``, plus the built-in no-tool requests for a method trained with them.

    Their features are read once per model and toolset: the sweep and every scarcity
    size and seed would otherwise render, hash and load them again.
    """
    if not method.negatives:
        return feats
    key = "bench_negatives:" + ",".join(s.name for s in specs)
    return feats.extended(memo(lm, key, lambda: cached_features(lm, specs, negative_conversations())[0]))


def train(lm: FrozenLM, specs: Sequence[ToolSpec], method: Method, feats: Features, *, seed: int,
          lambda_: float, epochs: int = 20, check: Features | None = None) -> ToolkenHead:
    """A trained head; for a method with ``check``, its tool-choice mix chosen on ``check`` (real questions)."""
    head = initial_head(lm, specs, method, seed)
    if method.trained:
        train_feats = training_features(lm, specs, method, feats)
        train_head(head, train_feats, TrainConfig(epochs=epochs, lambda_=lambda_, seed=seed))
        if method.gate:  # as Toolkens.fit does, thresholded on the training decisions (the suite holds none out)
            quiet = as_no_call_features(lm, *negative_decisions(lm))
            head.gate, _ = train_gate(head, train_feats, None, quiet=quiet)
        if method.check and check is not None:
            choose_mix(head, check)
    return head


def choose_lambda(lm: FrozenLM, specs: Sequence[ToolSpec], method: Method, feats: Features,
                  *, seed: int = 0, epochs: int = 20) -> tuple[float, dict[str, float]]:
    """The method's lambda, or the one :func:`toolken_agent.training.choose_lambda` picks on a 20% split."""
    if method.lambda_ is not None:
        return method.lambda_, {}
    return training_choose_lambda(lambda: initial_head(lm, specs, method, seed), training_features(lm, specs, method, feats),
                                  TrainConfig(epochs=epochs, seed=seed), lambdas=LAMBDAS)


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


def end_to_end(lm: FrozenLM, toolset: Any, head: ToolkenHead, tests: Sequence[Conversation], train_convs: Sequence[Conversation],
               *, tool_choice: str = "auto", max_new_tokens: int = 64) -> dict[str, Any]:
    """Decode the test turns for real (ToolkenGPT's protocol: calls may fire mid-text), tools run.

    Tool selection is then the first call anywhere in the reply; answer accuracy whether
    the final text states the gold answer. The demos the decoder shows while the LM
    writes arguments come from the training conversations, as ``Toolkens.fit`` stores them.
    """
    from toolken_agent.data import call_demos, with_demos
    from toolken_agent.decoding import DecodeConfig
    from toolken_agent.evaluation import evaluate
    from toolken_agent.toolkens import Toolkens

    demos = call_demos(list(train_convs))
    toolkens = Toolkens(lm, with_demos(toolset, demos), head, demos=demos)
    config = DecodeConfig(max_new_tokens=max_new_tokens, calls_anywhere=True, tool_choice=tool_choice, max_calls=4)
    return evaluate(toolkens, tests, config).as_dict()


def reply_start_features(lm: FrozenLM, questions: Sequence[str]) -> Features:
    """Features at the start of a reply to each question, as text decisions (no call is right).

    Used with requests from *another* benchmark (KAMEL questions for the math tools,
    GSM8K questions for KAMEL's and VirtualHome's): a toolken that fires there misfires.
    """
    return as_no_call_features(lm, *reply_start_decisions(lm, questions))
