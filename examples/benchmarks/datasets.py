"""The tool-learning benchmarks (FuncQA, GSM8K-XL, KAMEL, VirtualHome) in this project's formats.

Every data set is converted once, here, in code: the files under the data directory
(``$TOOLKEN_BENCH_DATA``, else ``shared/data`` beside the repository) are read-only
and described in their own README. A loader returns a :class:`BenchSet`: a
:class:`~toolken_agent.toolset.Toolset` (tools in a fixed order) and train/test records
in the OpenAI chat format that :func:`toolken_agent.data.load_jsonl` reads::

    {"messages": [...], "answer": ..., "source": "funcqa/train.json#12", ...}

``answer`` is the gold final answer (kept by ``load_jsonl``); other extra keys are
metadata that ``load_jsonl`` ignores. Every tool call in every record validates against
its tool's schema. ``BenchSet.stats`` counts what was kept and what was skipped, and why.

Command line: ``python -m examples.benchmarks.datasets --out DIR`` (from the repository
root) writes ``DIR/<name>/{train,test}.jsonl``, ``tools.json`` (OpenAI tool dicts, in
toolken order) and ``stats.json`` for every benchmark whose files are present.

Call notation
-------------
The data writes calls as ``<op>(arg1, arg2)=result`` (sometimes ending in ``<eoe>``).
Arguments are parsed as numbers, never evaluated: ``int`` when integral, else
``float``. A literal fraction ``p/q`` of two numbers is read as the number it denotes
(FuncQA writes ``<power>(2, 9/5)`` and ``<multiply>(0.9337, 4/3, 3.14)``); anything
else (``10-3``, ``12*2.0933``) makes the call unparseable. Calls go to the project's
math tools (``toolken_agent.tools.math``): ``add``/``multiply``/``lcm``/``gcd`` take
``{"numbers": [...]}`` (two or more), ``subtract``/``divide``/``remainder`` take
``{"a", "b"}``, ``power`` ``{"base", "exponent"}``, ``sqrt``/``ln`` ``{"x"}``, ``log``
``{"x"}`` or ``{"x", "base"}``, ``choose``/``permutate`` ``{"n", "k"}``. A call's tool
message carries the result as the data wrote it (numbers normalized: ``28.00`` ->
``28``); the data rounds more coarsely than the tools (FuncQA's train texts to 2
decimals, the tools to 4), which does not matter for training because tool turns are
context, not targets.

**Where a call splits the text.** An assistant text with calls becomes alternating
messages: the text before the call (ending where ToolkenGPT puts the toolken, e.g.
``... 5572 mod 3241=``), an assistant message holding the call, the tool message with
the result, and the assistant continuing with the rest of the text, *starting with the
result* (``2331 apples.``): the model reads the result from the tool turn and copies it.

FuncQA (``funcqa-oh``, ``funcqa-mh``): 13 math tools
----------------------------------------------------
*Train* (shared by both): ``funcqa/train.json``, 650 texts ``"Q: question\\nA: answer"``.
The user message is the text after ``Q:``. The call comes from ``tar_eq`` (one per
text) and is made *first*, at the start of the reply, the way a chat agent calls a tool;
then the assistant writes the answer text (the part after ``A:``, call notation removed),
which holds the result where the data wrote it: preferably right after an ``=``, else
at the result's last occurrence. ToolkenGPT instead fires the toolken mid-sentence,
after a written equation (``... 5572 mod 3241=``), which needs a model that writes the
equation first; a 135M model rarely does, and at the reply start (where a chat agent
decides) such training texts teach every toolken *not* to fire, so no trained method
called a tool there (measured: ``select`` 0.000 for all of them). Three texts have no
``tar_eq``: one writes the call inline (``50-25=<subtract>(50,25)=25``) and two write ``262*21=5502<eoe>5502``; both forms are
recovered. Skipped: unparseable calls (``<permutate>(10,10-3)``), calls the tool refuses
(``<gcd>(264)``: one number), and annotations whose result is not the tool's result to
the data's precision (``<add>(2, 1) = 55``, and six divisions written the wrong way
round: ``<divide>(183.63, 147)=0.8``); see ``stats``.

*Test*: one-hop ``funcqa_oh.json`` (60): the user question, an assistant message with
the gold call (from ``func``), its tool result, and ``"The answer is X."``; two gold
calls are negated (``-<log>(0.00008342)=4.0787``): the call is ``log``, its tool result
``-4.0787``, the answer ``4.0787``. Multi-hop ``funcqa_mh.json`` (68): the chain from
``calculation``, one call per assistant message, each followed by its result. Some gold
results are wrong (``<lcm>(38, 49, 17)=3724``, the tool says 31654;
``<permutate>(22,6)=537214360`` for 53721360): the data's values are kept as the gold,
and such records are marked ``"gold_differs_from_tools": true`` (2 one-hop, 4 multi-hop),
so that an evaluation can report them apart. Steps
that cannot be written as one call of a tool (``<divide>(234.56,4/3, 3.1416)``, three
numbers to divide; ``<multiply>(12*2.0933)``) are left out of the chain and the record is
marked ``"gold_calls_complete": false``; the gold ``answer`` is always there.

GSM8K-XL (``gsm8k-xl``): add, subtract, multiply, divide
--------------------------------------------------------
*Train*: ``gsm8k_original/train.jsonl`` (7,473). Each ``<<expr=result>>`` annotation
becomes a call: binary ``a+b``, ``a-b``, ``a*b``, ``a/b``, and also all-``+`` or all-``*``
chains (``12+6+20`` -> ``add({"numbers": [12, 6, 20]})``, as ToolkenGPT's own GSM8K-XL
prompt writes them; pass ``nary=False`` for binary only). Other expressions (mixed
operators, parentheses, ``26=26``) cannot be one call: a record with any such annotation
is skipped whole (the assistant would otherwise do that arithmetic in its head), as is a
record with no annotation; both are counted. The final ``#### 72`` becomes
``The answer is 72.``.

*Test*: ``gsm8k-xl/test.json`` (568): the question with its ``{v_i}`` placeholders
filled with the enlarged ``enhanced_v`` values (written as given: ints, decimals, and
fractions such as ``27/64``), ``answer`` = ``enhanced_result`` (int when integral). A test
record is the user question and an assistant message ``"The answer is X."`` (no gold
calls; ``load_jsonl`` needs an assistant turn). One record (426) has no enlarged values
(its placeholders are words: ``electric``, ``gas``): the original ``v`` are used.

KAMEL (``kamel-N``, N in 10, 20, 30, 60, 100, 234): one tool per Wikidata relation
-------------------------------------------------------------------------------------
*Tools*: ``api_desc.json`` in its order (the same as ``func_dict.json``;
``test_first_N.json`` asks only about the first N relations of it, and for N <= 60 about
every one of them). The name is the human-readable one (``country_of_citizenship``);
names used by more than one relation get the P-id appended, for every relation sharing
it (``location_p17``, ``location_p276``, ...), so a relation's tool is named the same
for every N. The description is api_desc's text. Schema-only ``ToolSpec`` with one
required string argument, named as in api_desc (``name``, ``title``, ``station``...) when
that is one identifier, else ``subject`` (``title/name``, and the five relations whose
signature has several arguments, such as ``successful_candidate(election_title, state)``,
whose training calls' arguments are joined with ``", "``).

*Train*: ``train_clean.json`` texts of the first-N relations, each with one call
``<f>P127("Nike")="Mark G. Parker"</f>``: the user message is the text up to the last
``?`` after which the answer value appears (``Who owns Nike?``); the assistant calls the
tool with the call's subject, the tool returns the value, and the assistant answers with
the rest of the text (``The owner entity of Nike is Mark G. Parker.``). Texts with no
such question (a third are narratives: ``Beyonce ... is a mother of three children. She
has 3 children.``) use the sentences before the one holding the value as the user
message, the answer starting at the first later sentence that names the value
(``narratives=False`` drops them); skipped: the value is only in the first sentence (no
prompt part: mostly one-sentence texts), the value is not in the text (17 values were corrupted to contain
P-ids: ``two P3373, Anna and Peter``), or a single-argument relation was called with
several or empty arguments (``P2094("","advanced")``). Markup left in 31 texts
(``Jubilee</f> line``, ``<i>...</i>``, ``<br>``, ``</li>``) is removed. Two relations (only
in ``kamel-234``) end up with no training text: ``participation_events`` (P1344: no text
at all) and ``name_origin`` (P138: one-sentence texts only); ``active_industries`` (P452,
in every N >= 30) has one.

*Test*: ``test_first_N.json`` (500): the user question, the gold call, its result (the
gold answer) and ``"The answer is X."``; ``answer`` is the first gold answer's
``chosen`` value, ``answers`` every accepted string (chosen, rdf and aliases of every gold
object). The test questions do not name their subject, so it is recovered from the
question: KAMEL asks about a relation with one template (``What places is [S]
broadcasted to?``), derived per relation as the common prefix and suffix of all its
questions in all ``test_first_*`` files (cut to whole words, and not ending or starting
in capitalized words, which belong to subjects: ``What school district does [S] belong
to?``, not ``... [S] High School belong to?``). A relation asked about only once gets
its subject as the span between the question's template words (question words,
auxiliaries, prepositions, words of the relation's name and description, and the
template words of other relations). Both are heuristics: the recovered subject is
right for nearly all questions but can keep or lose a lowercase word at its edge
(``What taxon is [procyanidin C2 found] in?``). ``subject_method`` on each record says
which (``template`` or ``span``); ``stats`` counts them.

VirtualHome (``vh``, and ``vh-58``)
------------------------------------
``legal_train_v4_embedding.json`` has 247 texts, each the same three few-shot tasks
followed by a fourth, different task: a scene (room, objects one can manipulate), a
goal, a hint and the gold plan, lines ``[ACTION] <object>`` ending with ``[END]``. The
247 fourth tasks are split ``heldout`` (20%) test / rest train, by a seeded shuffle; the
three few-shot tasks are always train (250 - 49 = 201 train, 49 test by default).

The user message is the scene, goal and hint. In ``vh`` (the default) each plan step is
one tool call: the 25 actions are tools (``walk``, ``switch_on``, ``look_at``...) with one
argument ``object``, an enum of the 32 objects; the plan is one assistant message with
one call per step, and ``[END]`` is the turn ending after the last call (the chat format
trains that stop as a decision). ``vh-58`` is ToolkenGPT's layout: 58 argument-free tools
(25 actions, 32 objects, ``end``), two calls per step and ``end`` last. ``answer`` is the
gold plan in the original notation, ``objects`` the scene's objects. Five toolkens never
occur in any plan: ``[DRINK]``, ``<bathroom>``, ``<cupboard>``, ``<kitchen_cabinet>``,
``<water>``.

Suggested metric (no simulator here, so not VirtualHome's success rate): parse the
generated calls into steps (action, object) and report **executable-step accuracy**, the
fraction of generated steps that are executable: the action is one of the 25, the object
is in the scene's list (``objects``; every gold step satisfies this) and the
(action, object) pair is attested in the training plans (a proxy for the simulator's
preconditions); plus **plan executability** (all steps executable), and agreement with
the gold plan (exact match; longest-common-subsequence F1 over steps, as VirtualHome
papers report). ``vh`` makes this direct: one call is one step, the object is
schema-constrained, so only the choice of action and the stop are the toolkens'.
"""

from __future__ import annotations

import argparse
import ast
import decimal
import functools
import json
import os
import random
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from toolken_agent.tool import ArgumentsError, ToolSpec
from toolken_agent.toolset import Toolset, make_toolset
from toolken_agent.tools.math import TOOLS as MATH_TOOLS

__all__ = [
    "BenchSet",
    "DATA_DIR",
    "KAMEL_SIZES",
    "available",
    "default_data_dir",
    "load",
    "load_funcqa",
    "load_gsm8k_xl",
    "load_kamel",
    "load_vh",
    "write_jsonl",
    "main",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
KAMEL_SIZES = (10, 20, 30, 60, 100, 234)


def default_data_dir() -> Path:
    """``$TOOLKEN_BENCH_DATA`` if set, else ``shared/data`` beside the repository."""
    env = os.environ.get("TOOLKEN_BENCH_DATA")
    if env:
        return Path(env).expanduser()
    return REPO_ROOT.parent / "shared" / "data"


DATA_DIR = default_data_dir()


@dataclass
class BenchSet:
    name: str  # e.g. "funcqa-oh", "kamel-30"
    toolset: Toolset  # tools, in a fixed order
    train: list[dict]  # OpenAI-format records {"messages": [...]} (may carry "answer")
    test: list[dict]  # same; gold calls in the assistant messages, "answer" = gold final answer
    stats: dict[str, Any] = field(default_factory=dict)  # kept / skipped counts, and why

    def tools_json(self) -> list[dict]:
        """The tools as OpenAI function-tool dicts, in toolken order."""
        return [spec.to_openai() for spec in self.toolset]


class CallError(ValueError):
    """A call in the data that cannot be written as one call of a tool."""


# ------------------------------------------------------------------ numbers and chats

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_NUM_RE = re.compile(_NUM)
_FRACTION_RE = re.compile(rf"({_NUM})\s*/\s*({_NUM})")


def parse_number(text: str, *, fractions: bool = False) -> int | float:
    """A number literal as ``int`` (when integral) or ``float``; never evaluated.

    With ``fractions``, ``p/q`` of two literals is read as the rational it denotes.
    """
    s = str(text).strip()
    if _NUM_RE.fullmatch(s):
        value = Fraction(s)
    elif fractions and (m := _FRACTION_RE.fullmatch(s)):
        den = Fraction(m.group(2))
        if den == 0:
            raise CallError(f"division by zero in {s!r}")
        value = Fraction(m.group(1)) / den
    else:
        raise CallError(f"not a number: {s!r}")
    return value.numerator if value.denominator == 1 else float(value)


def fmt_number(value: Any) -> str:
    """A number as plain text: ``18.0`` -> ``18``, ``8.342e-05`` -> ``0.00008342``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return format(decimal.Decimal(repr(value)), "f")
    return str(value)


class _Chat:
    """Builds one OpenAI-format conversation; call ids are numbered within it."""

    def __init__(self, user: str):
        self.messages: list[dict] = [{"role": "user", "content": user}]
        self._calls = 0

    def say(self, text: str) -> None:
        self.messages.append({"role": "assistant", "content": text})

    def call(self, calls: Sequence[tuple[str, Mapping[str, Any]]], *, text: str | None = None,
             results: Sequence[str] | None = None) -> None:
        """One assistant message with ``calls`` (after ``text``), then their results."""
        dicts = []
        for name, args in calls:
            self._calls += 1
            dicts.append({"id": f"call_{self._calls}", "type": "function",
                          "function": {"name": name, "arguments": json.dumps(dict(args), ensure_ascii=False)}})
        self.messages.append({"role": "assistant", "content": text or None, "tool_calls": dicts})
        for d, result in zip(dicts, results or ()):
            self.messages.append({"role": "tool", "tool_call_id": d["id"], "content": result})

    def record(self, **extra: Any) -> dict:
        return {"messages": self.messages, **{k: v for k, v in extra.items() if v is not None}}


def _user_text(record: Mapping[str, Any]) -> str:
    return next(m["content"] for m in record["messages"] if m["role"] == "user")


def _norm_text(text: str) -> str:
    return " ".join(text.lower().split())


def _drop_test_overlap(train: list[dict], test: list[dict], stats: dict) -> list[dict]:
    """Train records whose user message equals a test question are dropped (counted)."""
    questions = {_norm_text(_user_text(r)) for r in test}
    kept = [r for r in train if _norm_text(_user_text(r)) not in questions]
    stats["train_dropped_test_overlap"] = len(train) - len(kept)
    return kept


def _read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _read_jsonl(path: Path) -> list[Any]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ------------------------------------------------------------------ math calls

_LIST_OPS = ("add", "multiply", "lcm", "gcd")
_ARG_NAMES = {
    "subtract": ("a", "b"), "divide": ("a", "b"), "remainder": ("a", "b"),
    "power": ("base", "exponent"), "choose": ("n", "k"), "permutate": ("n", "k"),
    "sqrt": ("x",), "ln": ("x",),
}


def math_args(op: str, values: Sequence[int | float]) -> dict[str, Any]:
    """The argument object of math tool ``op`` for positional ``values``."""
    values = list(values)
    if op in _LIST_OPS:
        if len(values) < 2:
            raise CallError(f"{op} needs at least two numbers, got {len(values)}")
        return {"numbers": values}
    if op == "log":
        if len(values) not in (1, 2):
            raise CallError(f"log takes x or x, base; got {len(values)} numbers")
        return dict(zip(("x", "base"), values))
    names = _ARG_NAMES.get(op)
    if names is None:
        raise CallError(f"unknown operation {op!r}")
    if len(values) != len(names):
        raise CallError(f"{op} takes {len(names)} argument(s), got {len(values)}")
    return dict(zip(names, values))


def run_tool(spec: ToolSpec, args: Mapping[str, Any]) -> Any:
    """Validate ``args`` and run the tool; a refusal is a :class:`CallError`."""
    try:
        return spec.func(**spec.validate(args))
    except (ArgumentsError, ValueError, TypeError) as exc:
        raise CallError(str(exc)) from None


def _agrees(tool_value: Any, data_value: int | float) -> bool:
    """The data's result equals the tool's to the data's own precision (or 1%)."""
    written = fmt_number(data_value)
    decimals = len(written.split(".")[1]) if "." in written else 0
    tolerance = max(0.5 * 10 ** -decimals + 1e-9, 0.01 * abs(float(data_value)))
    return abs(float(tool_value) - float(data_value)) <= tolerance


_CALL_RE = re.compile(r"(?P<neg>-)?<(?P<op>\w+)>\((?P<args>.*)\)\s*=\s*(?P<res>[^<]*?)\s*(?:<eoe>)?")


def parse_call_notation(text: str) -> tuple[str, list[int | float], int | float]:
    """``<op>(a, b)=r`` -> ``(op, [a, b], r)``; ``-<op>(x)=r`` is ``op`` with value ``-r``."""
    m = _CALL_RE.fullmatch(text.strip())
    if not m:
        raise CallError(f"not a call: {text!r}")
    args = m.group("args")
    while args.endswith(")") and args.count(")") > args.count("("):
        args = args[:-1]  # "<divide>(12,12.56))=0.9554": one closing parenthesis too many
    values = [parse_number(a, fractions=True) for a in args.split(",")]
    result = parse_number(m.group("res"))
    if m.group("neg"):
        result = -result
    return m.group("op"), values, result


def _math_toolset(names: Sequence[str] | None = None, source: str = "") -> Toolset:
    specs = make_toolset(MATH_TOOLS, source="toolken_agent.tools.math")
    if names is None:
        return Toolset(specs.specs, source or specs.source)
    return Toolset(tuple(specs.get(n) for n in names), source)


# ------------------------------------------------------------------ FuncQA


def _result_position(answer: str, result: str) -> int | None:
    """Where the call's result starts in ``answer``: after an ``=``, else its last occurrence."""
    number = re.escape(result) + r"(?!\d|\.\d)"
    m = re.search(r"=\s*(" + number + ")", answer)
    if m:
        return m.start(1)
    hits = list(re.finditer(r"(?<![\d.])" + number, answer))
    return hits[-1].start() if hits else None


_INLINE_CALL = re.compile(rf"<(\w+)>\(([^)]*)\)\s*=\s*({_NUM})")
_EOE_EXPR = re.compile(rf"({_NUM})\s*([-+*/x])\s*({_NUM})\s*=\s*({_NUM})<eoe>")
_OPS = {"+": "add", "-": "subtract", "*": "multiply", "x": "multiply", "/": "divide"}


def _funcqa_train(data_dir: Path, toolset: Toolset, stats: Counter) -> list[dict]:
    records = []
    for i, rec in enumerate(_read_json(data_dir / "funcqa" / "train.json")):
        text = rec["text"]
        if "\nA:" not in text:
            stats["train_skipped_no_QA_split"] += 1
            continue
        question, answer = text.split("\nA:", 1)
        question = question.strip()
        question = question[2:].strip() if question.startswith("Q:") else question
        answer = answer.strip()
        try:
            if rec.get("tar_eq"):
                if len(rec["tar_eq"]) != 1:
                    raise CallError("more than one call")
                # "which is 0.53<eoe>0.53%": a leftover of the call notation in the text
                answer = re.sub(rf"({_NUM})<eoe>\1", r"\1", answer)
                op, values, result = parse_call_notation(rec["tar_eq"][0])
                written = (rec.get("tar_number") or [fmt_number(result)])[0].strip()
                pos = _result_position(answer, written)
                if pos is None:
                    stats["train_skipped_result_not_in_text"] += 1
                    continue
                said = answer
            elif m := _INLINE_CALL.search(answer):
                op = m.group(1)
                values = [parse_number(a, fractions=True) for a in m.group(2).split(",")]
                result = parse_number(m.group(3))
                said = answer[: m.start()] + answer[m.start(3):]
                stats["train_recovered_inline_call"] += 1
            elif m := _EOE_EXPR.search(answer):
                op = _OPS[m.group(2)]
                values = [parse_number(m.group(1)), parse_number(m.group(3))]
                result = parse_number(m.group(4))
                said = re.sub(rf"({_NUM})<eoe>\1(?!\d)", r"\1", answer).replace("<eoe>", "")  # "5502<eoe>5502"
                stats["train_recovered_eoe_expression"] += 1
            else:
                stats["train_skipped_no_call"] += 1
                continue
            args = math_args(op, values)
            value = run_tool(toolset.get(op), args)
        except CallError:
            stats["train_skipped_unusable_call"] += 1
            continue
        if not _agrees(value, result):
            stats["train_skipped_wrong_result"] += 1
            continue
        chat = _Chat(question)
        chat.call([(op, args)], results=[fmt_number(result)])
        chat.say(said.strip())
        records.append(chat.record(source=f"funcqa/train.json#{i}"))
    return records


def load_funcqa(data_dir: Path = DATA_DIR, split: str = "oh") -> BenchSet:
    """FuncQA with the 13 math tools; ``split`` is ``"oh"`` (one-hop) or ``"mh"`` (multi-hop)."""
    if split not in ("oh", "mh"):
        raise ValueError(f"split must be 'oh' or 'mh', not {split!r}")
    data_dir = Path(data_dir)
    toolset = _math_toolset()
    stats: Counter = Counter()
    train = _funcqa_train(data_dir, toolset, stats)
    test = []
    for i, rec in enumerate(_read_json(data_dir / "funcqa" / f"funcqa_{split}.json")):
        steps = [rec["func"]] if split == "oh" else list(rec["calculation"])
        answer = parse_number(str(rec["answer"]))
        chat = _Chat(rec["question"])
        complete, differs = True, False
        for step in steps:
            try:
                op, values, result = parse_call_notation(step)
                args = math_args(op, values)
                toolset.get(op).validate(args)
            except (CallError, ArgumentsError):
                complete = False
                stats["test_gold_steps_dropped"] += 1
                continue
            try:
                if not _agrees(run_tool(toolset.get(op), args), result):
                    stats["test_gold_steps_result_differs_from_tool"] += 1
                    differs = True
            except CallError:
                stats["test_gold_steps_tool_refuses"] += 1
                differs = True
            chat.call([(op, args)], results=[fmt_number(result)])
            stats["test_gold_calls"] += 1
        chat.say(f"The answer is {fmt_number(answer)}.")
        stats["test_records_incomplete_gold"] += not complete
        stats["test_records_gold_differs_from_tools"] += differs
        test.append(chat.record(answer=answer, source=f"funcqa/funcqa_{split}.json#{i}",
                                gold_calls_complete=None if complete else False,
                                gold_differs_from_tools=True if differs else None))
    train = _drop_test_overlap(train, test, stats)
    stats.update(train=len(train), test=len(test))
    return BenchSet(f"funcqa-{split}", toolset, train, test, dict(sorted(stats.items())))


# ------------------------------------------------------------------ GSM8K-XL

_BINARY = re.compile(rf"({_NUM})([-+*/])({_NUM})")
_ADD_CHAIN = re.compile(rf"{_NUM}(?:\+{_NUM})+")
_MUL_CHAIN = re.compile(rf"{_NUM}(?:\*{_NUM})+")


def gsm8k_call(annotation: str, *, nary: bool = True) -> tuple[str, dict[str, Any], int | float, str]:
    """``48/2=24`` -> ``("divide", {"a": 48, "b": 2}, 24, "binary")``; else :class:`CallError`."""
    if "=" not in annotation:
        raise CallError(f"no result in {annotation!r}")
    expr, result_text = annotation.rsplit("=", 1)
    expr = expr.replace(" ", "")
    result = parse_number(result_text)
    if m := _BINARY.fullmatch(expr):
        op = _OPS[m.group(2)]
        values = [parse_number(m.group(1)), parse_number(m.group(3))]
        return op, math_args(op, values), result, "binary"
    if nary and _ADD_CHAIN.fullmatch(expr):
        return "add", {"numbers": [parse_number(v) for v in expr.split("+")]}, result, "chain"
    if nary and _MUL_CHAIN.fullmatch(expr):
        return "multiply", {"numbers": [parse_number(v) for v in expr.split("*")]}, result, "chain"
    raise CallError(f"not one add/subtract/multiply/divide call: {annotation!r}")


def _fill_placeholders(question: str, values: Sequence[Any]) -> str:
    def sub(m: re.Match) -> str:
        k = int(m.group(1)) - 1
        if not 0 <= k < len(values):
            raise KeyError(m.group(0))
        return fmt_number(values[k])

    return re.sub(r"\{v_(\d+)\}", sub, question)


def load_gsm8k_xl(data_dir: Path = DATA_DIR, *, nary: bool = True) -> BenchSet:
    """GSM8K-XL: train from GSM8K's annotated train set, test with the enlarged numbers."""
    data_dir = Path(data_dir) / "gsm8k-xl"
    toolset = _math_toolset(["add", "subtract", "multiply", "divide"], source="gsm8k-xl")
    stats: Counter = Counter()
    train = []
    for i, rec in enumerate(_read_jsonl(data_dir / "gsm8k_original" / "train.jsonl")):
        body, _, final = rec["answer"].rpartition("####")
        pieces = re.split(r"<<(.*?)>>", body)
        texts, annotations = pieces[0::2], pieces[1::2]
        if not annotations:
            stats["train_skipped_no_annotation"] += 1
            continue
        try:
            calls = [gsm8k_call(a, nary=nary) for a in annotations]
            answer = parse_number(final.strip().replace(",", ""))
            for name, args, _, _ in calls:
                toolset.get(name).validate(args)
        except (CallError, ArgumentsError):
            stats["train_skipped_unmappable_annotation"] += 1
            stats["train_unmappable_annotations"] += sum(1 for a in annotations if not _mappable(a, nary))
            continue
        for *_, kind in calls:
            stats[f"train_calls_{kind}"] += 1
        chat = _Chat(rec["question"])
        for text, (name, args, result, _) in zip(texts, calls):
            chat.call([(name, args)], text=text.rstrip(), results=[fmt_number(result)])
        last = texts[-1].strip()
        chat.say((last + "\n" if last else "") + f"The answer is {fmt_number(answer)}.")
        train.append(chat.record(answer=answer, source=f"gsm8k-xl/gsm8k_original/train.jsonl#{i}"))
    test = []
    for i, rec in enumerate(_read_jsonl(data_dir / "test.json")):
        try:
            question = _fill_placeholders(rec["question"], rec["enhanced_v"])
        except KeyError:
            question = _fill_placeholders(rec["question"], rec["v"])
            stats["test_filled_with_original_v"] += 1
        answer = parse_number(repr(float(rec["enhanced_result"])) if isinstance(rec["enhanced_result"], float)
                              else str(rec["enhanced_result"]))
        chat = _Chat(question)
        chat.say(f"The answer is {fmt_number(answer)}.")
        test.append(chat.record(answer=answer, source=f"gsm8k-xl/test.json#{i}"))
    train = _drop_test_overlap(train, test, stats)
    stats.update(train=len(train), test=len(test))
    return BenchSet("gsm8k-xl", toolset, train, test, dict(sorted(stats.items())))


def _mappable(annotation: str, nary: bool) -> bool:
    try:
        gsm8k_call(annotation, nary=nary)
        return True
    except CallError:
        return False


# ------------------------------------------------------------------ KAMEL

_SIGNATURE = re.compile(r"^\s*([A-Za-z0-9_]+)\((.*?)\):\s*(.+)$", re.S)
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class _Relation:
    pid: str
    name: str  # the tool name
    arg: str  # the one argument's name
    signature: str  # api_desc's argument list, e.g. "year, competition"
    description: str

    @property
    def multi_arg(self) -> bool:
        return "," in self.signature

    def spec(self) -> ToolSpec:
        what = f"The {self.signature} to look up" + (", separated by commas." if self.multi_arg else ".")
        schema = {"type": "object", "properties": {self.arg: {"type": "string", "description": what}},
                  "required": [self.arg]}
        return ToolSpec(self.name, self.description, schema)


@functools.lru_cache(maxsize=4)
def _kamel_relations(kamel_dir: str) -> tuple[_Relation, ...]:
    api = _read_json(Path(kamel_dir) / "api_desc.json")
    parsed = []
    for pid, desc in api.items():
        m = _SIGNATURE.match(desc)
        if not m:
            raise ValueError(f"api_desc.json: cannot read {pid}: {desc!r}")
        parsed.append((pid, re.sub(r"[^A-Za-z0-9_-]", "_", m.group(1)), m.group(2).strip(), m.group(3).strip()))
    counts = Counter(name for _, name, _, _ in parsed)
    relations = []
    for pid, name, signature, description in parsed:
        if counts[name] > 1:
            name = f"{name}_{pid.lower()}"
        arg = signature if _IDENTIFIER.fullmatch(signature) else "subject"
        relations.append(_Relation(pid, name[:64], arg, signature, description))
    return tuple(relations)


_KAMEL_CALL = re.compile(r'<f>(P\d+)\((.*)\)="(.*)"</f>', re.S)
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"|([^,\s][^,]*)')
_SENTENCE_END = re.compile(r"(?<=[.!])\s+")
_MARKUP = re.compile(r"</?[A-Za-z]+\s*/?>")  # "Jubilee</f> line", "<i>Visual Studio Code</i>", "<br>"


def _kamel_call_args(text: str) -> list[str]:
    """``"Super Bowl", 2020`` -> ``["Super Bowl", "2020"]`` (quoted or bare, comma-separated)."""
    return [(re.sub(r'\\(.)', r"\1", q) or b).strip() for q, b in _QUOTED.findall(text)]


def _split_kamel_text(text: str, value: str) -> tuple[str, str] | None:
    """(prompt part, answer part) of a train text, or ``None`` when there is no prompt part."""
    word = re.compile(rf"(?<!\w){re.escape(value)}(?!\w)")  # "beverage", not in "beverages"
    q = text.rfind("?")
    while q >= 0 and not word.search(text, q + 1):
        q = text.rfind("?", 0, q)
    if q >= 0:
        return text[: q + 1].strip(), text[q + 1:].strip()
    sentences = _SENTENCE_END.split(text.strip())
    for k, sentence in enumerate(sentences[1:], start=1):  # the first sentence is the prompt
        if word.search(sentence):
            return " ".join(sentences[:k]), " ".join(sentences[k:])
    return None


_FUNCTION_WORDS = frozenset(
    "what who whom whose where when which how many much is are was were has have had does do did the a an of "
    "in on at to for by with from into that this as and or be been being it its there".split()
)


def _word(token: str) -> str:
    return re.sub(r"[^\w]", "", token.lower())


def _words(text: str) -> frozenset[str]:
    return frozenset(w.lower() for w in re.findall(r"[A-Za-z]+", text.replace("_", " ")))


def _stem_match(word: str, words: Iterable[str]) -> bool:
    """``word`` is one of ``words`` or shares a stem with one (``legislated``/``legislation``)."""
    if not word:
        return False
    for w in words:
        common = len(os.path.commonprefix([word, w]))
        if word == w or common >= 5 or common >= 4 and common == min(len(word), len(w)):
            return True
    return False


class _SubjectFinder:
    """Recovers the subject entity of a KAMEL test question (see the module docstring).

    A relation's template is the common prefix and suffix of its questions, cut to whole
    words. Capitalized words at its inner edges belong to subjects (``... [S] School
    belong to?``), except acronyms of the relation's name (``IUCN``); for relations with
    only two or three questions, lowercase words at the inner edges that no
    well-attested template uses and the relation does not name are moved to the subject
    too (``[S] gubernatorial election for?``). Without a template, the subject is the span
    from the first to the last word that is not a template word.
    """

    RELIABLE = 4  # questions from which a common prefix/suffix is trusted as is

    def __init__(self, questions: Mapping[str, Sequence[str]], relations: Sequence[_Relation]):
        self.name_words = {r.pid: _words(r.name) for r in relations}
        self.rel_words = {r.pid: _words(f"{r.name} {r.signature} {r.description}") for r in relations}
        self.templates: dict[str, tuple[str, str]] = {}
        vocab = set(_FUNCTION_WORDS)
        for pid, qs in questions.items():
            if len(qs) >= self.RELIABLE and pid in self.name_words:
                template = self._derive(pid, qs, None)
                if template:
                    self.templates[pid] = template
                    vocab |= {_word(t) for t in " ".join(template).split()} - {""}
        self.vocab = frozenset(vocab)
        for pid, qs in questions.items():
            if 2 <= len(qs) < self.RELIABLE and pid in self.name_words:
                template = self._derive(pid, qs, self.vocab)
                if template:
                    self.templates[pid] = template

    def _acronym(self, pid: str, token: str) -> bool:
        core = re.sub(r"[^\w]", "", token)
        return len(core) > 1 and core.isupper() and core.lower() in self.name_words[pid]

    def _outside(self, pid: str, token: str, vocab: frozenset[str] | None) -> bool:
        """``token``, at an inner edge of a derived template, belongs to the subject."""
        if token[:1].isupper() or token[:1].isdigit():
            return not self._acronym(pid, token)
        if vocab is None:
            return False
        w = _word(token)
        return bool(w) and w not in vocab and not _stem_match(w, self.rel_words[pid])

    def _derive(self, pid: str, qs: Sequence[str], vocab: frozenset[str] | None) -> tuple[str, str] | None:
        prefix = os.path.commonprefix(list(qs))
        prefix = prefix[: prefix.rfind(" ") + 1]
        suffix = os.path.commonprefix([q[::-1] for q in qs])[::-1]
        if " " in suffix:
            suffix = suffix[suffix.find(" "):]
        else:
            suffix = re.search(r"[^\w\s]*$", suffix).group(0)
        head = prefix.split()
        while len(head) > 1 and self._outside(pid, head[-1], vocab):
            head.pop()
        prefix = " ".join(head) + " " if head else ""
        tail = suffix.split()
        while tail and self._outside(pid, tail[0], vocab):
            if len(tail) == 1:  # " Station?": only the question mark is template
                tail = [re.search(r"[^\w\s]*$", tail[0]).group(0)]
                suffix = tail[0]
                break
            tail.pop(0)
        if tail and suffix.startswith(" "):
            suffix = " " + " ".join(tail)
        if not all(len(q) > len(prefix) + len(suffix) for q in qs):
            return None
        return prefix, suffix

    def find(self, pid: str, question: str) -> tuple[str | None, str]:
        question = question.strip()
        template = self.templates.get(pid)
        if template:
            prefix, suffix = template
            if question.startswith(prefix) and question.endswith(suffix):
                subject = question[len(prefix): len(question) - len(suffix)].strip()
                if subject:
                    return subject, "template"
        subject = self.span(pid, question)
        return (subject, "span") if subject else (None, "none")

    def span(self, pid: str, question: str) -> str | None:
        tokens = question.strip().rstrip("?").split()

        def template_word(i: int, token: str) -> bool:
            if i == 0:
                return True
            if token[:1].isupper() or token[:1].isdigit():
                return self._acronym(pid, token)
            w = _word(token)
            return w in self.vocab or _stem_match(w, self.rel_words.get(pid, ()))

        inside = [i for i, t in enumerate(tokens) if not template_word(i, t)]
        if not inside:
            return None
        return " ".join(tokens[inside[0]: inside[-1] + 1]).strip(",;:")


@functools.lru_cache(maxsize=4)
def _kamel_subject_finder(kamel_dir: str) -> _SubjectFinder:
    questions: dict[str, set[str]] = defaultdict(set)
    for n in KAMEL_SIZES:
        path = Path(kamel_dir) / f"test_first_{n}.json"
        if path.is_file():
            for rec in _read_json(path):
                questions[rec["api"]].add(rec["question"].strip())
    return _SubjectFinder({pid: sorted(qs) for pid, qs in questions.items()}, _kamel_relations(kamel_dir))


@functools.lru_cache(maxsize=2)
def _kamel_train_raw(path: str) -> list[dict]:
    return _read_json(Path(path))


def _accepted(answers: Sequence[Mapping[str, Any]]) -> list[str]:
    out: list[str] = []
    for a in answers:
        for s in [a.get("chosen"), a.get("rdf"), *(a.get("alternative") or [])]:
            if isinstance(s, str) and s.strip() and s.strip() not in out:
                out.append(s.strip())
    return out


def load_kamel(data_dir: Path = DATA_DIR, n_tools: int = 30, *, narratives: bool = True) -> BenchSet:
    """KAMEL with the first ``n_tools`` relations (10, 20, 30, 60, 100 or 234) as tools."""
    if n_tools not in KAMEL_SIZES:
        raise ValueError(f"n_tools must be one of {KAMEL_SIZES}, not {n_tools}")
    kdir = Path(data_dir) / "kamel"
    relations = _kamel_relations(str(kdir))[:n_tools]
    by_pid = {r.pid: r for r in relations}
    toolset = make_toolset([r.spec() for r in relations], source=f"kamel-{n_tools}")
    stats: Counter = Counter()
    train = []
    covered: set[str] = set()
    for i, rec in enumerate(_kamel_train_raw(str(kdir / "train_clean.json"))):
        if rec["api"] not in by_pid:
            continue
        rel = by_pid[rec["api"]]
        m = _KAMEL_CALL.fullmatch(rec["call"][0].strip()) if len(rec.get("call") or []) == 1 else None
        if not m or m.group(1) != rel.pid:
            stats["train_skipped_unreadable_call"] += 1
            continue
        args = _kamel_call_args(m.group(2))
        value = m.group(3).strip()
        if (len(args) > 1 and not rel.multi_arg) or not all(args) or not args:
            stats["train_skipped_argument_count"] += 1
            continue
        split = _split_kamel_text(rec["text"], value) if value else None
        if split is None:
            stats["train_skipped_value_not_in_text" if value not in rec["text"] or not value
                  else "train_skipped_no_prompt_part"] += 1
            continue
        stats["train_arguments_joined"] += len(args) > 1
        prompt, reply = (_MARKUP.sub("", part).strip() for part in split)
        if _MARKUP.search(rec["text"]):
            stats["train_markup_removed"] += 1
        narrative = not prompt.endswith("?")
        if narrative and not narratives:
            stats["train_skipped_narrative"] += 1
            continue
        stats["train_narrative" if narrative else "train_question"] += 1
        covered.add(rel.pid)
        chat = _Chat(prompt)
        chat.call([(rel.name, {rel.arg: ", ".join(args)})], results=[value])
        chat.say(reply)
        train.append(chat.record(answer=value, source=f"kamel/train_clean.json#{i}"))
    stats["train_relations_without_examples"] = len(set(by_pid) - covered)
    finder = _kamel_subject_finder(str(kdir))
    test = []
    for i, rec in enumerate(_read_json(kdir / f"test_first_{n_tools}.json")):
        record = _kamel_question(rec, by_pid[rec["api"]], finder, f"kamel/test_first_{n_tools}.json#{i}")
        stats[f"test_subject_{record['subject_method']}"] += 1
        test.append(record)
    train = _drop_test_overlap(train, test, stats)
    stats.update(train=len(train), test=len(test), tools=len(toolset))
    return BenchSet(f"kamel-{n_tools}", toolset, train, test, dict(sorted(stats.items())))


def _kamel_question(rec: Mapping[str, Any], rel: _Relation, finder: _SubjectFinder, source: str) -> dict:
    """A KAMEL test question as a conversation: the question, the gold call, its result, the answer."""
    accepted = _accepted(rec["answer"])
    gold = (rec["answer"][0].get("chosen") if rec["answer"] else None) or (accepted[0] if accepted else "")
    subject, method = finder.find(rel.pid, rec["question"])
    chat = _Chat(rec["question"].strip())
    chat.call([(rel.name, {rel.arg: subject} if subject else {})], results=[gold])
    chat.say(f"The answer is {gold}.")
    return chat.record(answer=gold, answers=accepted, subject_method=method, source=source)


def kamel_check(data_dir: Path = DATA_DIR, n_tools: int = 30, *, exclude: Iterable[str] = (), per_tool: int = 2,
                seed: int = 0) -> list[dict]:
    """Up to ``per_tool`` real KAMEL questions per relation of the first ``n_tools``, none in ``exclude``.

    A check set shaped like the test (``Toolkens.fit(check=...)``): the
    ``test_first_*`` files are six samples of KAMEL's questions, 2,715 distinct ones in
    all, so those outside the evaluated test questions (``exclude``, by text) are spare.
    Relations past the 100th appear only in ``test_first_234``: with all 500 of its
    questions under test, only the first 100 relations get check questions.
    """
    kdir = Path(data_dir) / "kamel"
    by_pid = {r.pid: r for r in _kamel_relations(str(kdir))[:n_tools]}
    finder = _kamel_subject_finder(str(kdir))
    excluded = {_norm_text(q) for q in exclude}
    pool: dict[str, dict[str, tuple[dict, str]]] = {}  # relation -> question -> (raw record, source)
    for n in KAMEL_SIZES:
        for i, rec in enumerate(_read_json(kdir / f"test_first_{n}.json")):
            key = _norm_text(rec["question"])
            if rec["api"] in by_pid and key not in excluded:
                pool.setdefault(rec["api"], {}).setdefault(key, (rec, f"kamel/test_first_{n}.json#{i}"))
    rng = random.Random(seed)
    chosen = [pool[pid][k] for pid in sorted(pool)
              for k in rng.sample(sorted(pool[pid]), min(per_tool, len(pool[pid])))]
    return [_kamel_question(rec, by_pid[rec["api"]], finder, source) for rec, source in chosen]


# ------------------------------------------------------------------ VirtualHome

# The 25 actions: tool name and description, in func_dict.json's order.
VH_ACTIONS = {
    "[DRINK]": ("drink", "Drink from an object, such as a glass of water."),
    "[FIND]": ("find", "Find an object or place nearby and get close enough to use it."),
    "[SIT]": ("sit", "Sit down on an object, such as a chair, a couch or a bed."),
    "[GRAB]": ("grab", "Grab an object and hold it in hand."),
    "[WALK]": ("walk", "Walk to a room or to an object."),
    "[SWITCHON]": ("switch_on", "Switch on an appliance or device, such as a computer, a television or a light."),
    "[TURNTO]": ("turn_to", "Turn to face an object."),
    "[WATCH]": ("watch", "Watch an object, such as the television."),
    "[PUTOBJBACK]": ("put_back", "Put an object that is held back where it belongs."),
    "[READ]": ("read", "Read an object, such as a novel, a book or the mail."),
    "[OPEN]": ("open", "Open an object, such as a cupboard, a freezer or a door."),
    "[LIE]": ("lie", "Lie down on an object, such as a bed or a couch."),
    "[LOOKAT]": ("look_at", "Look at an object."),
    "[DROP]": ("drop", "Drop an object that is held."),
    "[TYPE]": ("type", "Type on an object, such as a keyboard or a phone."),
    "[POINTAT]": ("point_at", "Point at an object."),
    "[PULL]": ("pull", "Pull an object."),
    "[TOUCH]": ("touch", "Touch an object, such as a button or a screen."),
    "[SWITCHOFF]": ("switch_off", "Switch off an appliance or device, such as a computer, a television or a light."),
    "[RINSE]": ("rinse", "Rinse an object under water."),
    "[CLOSE]": ("close", "Close an object, such as a cupboard, a freezer or a door."),
    "[PUSH]": ("push", "Push an object."),
    "[RUN]": ("run", "Run to a room or to an object."),
    "[WASH]": ("wash", "Wash an object."),
    "[PLUGIN]": ("plug_in", "Plug in an electric device."),
}
VH_END = ("end", "End the plan: the task is done.")
_VH_ROOMS = {"home_office", "bedroom", "dining_room", "bathroom"}

_VH_TASK = re.compile(
    r"I am in (?P<room>\[.*?\])\. The objects I can manipulate are (?P<objects>\[.*?\])\.\n"
    r"Goal:\n(?P<goal>.*?)\nHint:\n(?P<hint>.*?)\nPlan:\n(?P<plan>.*)", re.S)


def _vh_object_description(obj: str) -> str:
    words = "food" if obj == "food_food" else obj.replace("_", " ")
    kind = "the room" if obj in _VH_ROOMS else "the object"
    return f"Use {kind} {words} ({obj}) as the target of the action just chosen."


def _vh_toolset(objects: Sequence[str], style: str) -> Toolset:
    specs = []
    if style == "steps":
        schema = {"type": "object", "required": ["object"], "properties": {
            "object": {"type": "string", "enum": list(objects), "description": "The room or object to act on."}}}
        specs = [ToolSpec(name, desc, schema) for name, desc in VH_ACTIONS.values()]
        return make_toolset(specs, source="vh")
    empty = {"type": "object", "properties": {}}
    specs = [ToolSpec(name, desc, empty) for name, desc in VH_ACTIONS.values()]
    specs += [ToolSpec(obj, _vh_object_description(obj), empty) for obj in objects]
    specs.append(ToolSpec(*VH_END, empty))
    return make_toolset(specs, source="vh-58")


def _vh_task(block: str) -> dict:
    m = _VH_TASK.match(block.strip())
    if not m:
        raise ValueError(f"cannot read VirtualHome task: {block[:80]!r}")
    lines = [line.strip() for line in m.group("plan").strip().splitlines() if line.strip()]
    if not lines or lines[-1] != "[END]":
        raise ValueError(f"plan does not end with [END]: {lines}")
    steps = []
    for line in lines[:-1]:
        sm = re.fullmatch(r"(\[\w+\])\s+<(\w+)>", line)
        if not sm:
            raise ValueError(f"not an [ACTION] <object> step: {line!r}")
        steps.append((sm.group(1), sm.group(2)))
    rooms = ast.literal_eval(m.group("room"))  # a list of string literals, not code
    objects = ast.literal_eval(m.group("objects"))
    user = (f"I am in the {' and the '.join(rooms)}. The objects I can manipulate are: {', '.join(objects)}.\n"
            f"Goal: {m.group('goal').strip()}\nHint: {m.group('hint').strip()}")
    return {"user": user, "steps": steps, "objects": objects, "plan": "\n".join(lines)}


def load_vh(data_dir: Path = DATA_DIR, heldout: float = 0.2, seed: int = 0, *, style: str = "steps") -> BenchSet:
    """VirtualHome plans; ``style`` ``"steps"`` (name ``vh``) or ``"toolkens"`` (``vh-58``)."""
    if style not in ("steps", "toolkens"):
        raise ValueError(f"style must be 'steps' or 'toolkens', not {style!r}")
    vdir = Path(data_dir) / "vh"
    func_dict = _read_json(vdir / "func_dict.json")
    ordered = sorted(func_dict, key=func_dict.get)
    objects = [t[1:-1] for t in ordered if t.startswith("<")]
    unknown = {t for t in ordered if t.startswith("[") and t != "[END]"} - set(VH_ACTIONS)
    if unknown:
        raise ValueError(f"vh/func_dict.json has actions this module does not describe: {sorted(unknown)}")
    toolset = _vh_toolset(objects, style)
    stats: Counter = Counter()
    raw = _read_json(vdir / "legal_train_v4_embedding.json")
    demos: list[dict] = []
    tasks: list[dict] = []
    for i, rec in enumerate(raw):
        blocks = [b for b in re.split(r"Task \d+:\n", rec["text"]) if b.strip()]
        task = _vh_task(blocks[-1])
        task["source"] = f"vh/legal_train_v4_embedding.json#{i}"
        expected = [tok for a, o in task["steps"] for tok in (a, f"<{o}>")] + ["[END]"]
        if rec.get("tar_eq") and rec["tar_eq"] != expected:
            raise ValueError(f"{task['source']}: plan text and tar_eq disagree")
        tasks.append(task)
        if i == 0:
            for k, block in enumerate(blocks[:-1]):
                demo = _vh_task(block)
                demo["source"] = f"vh/legal_train_v4_embedding.json#0 (few-shot task {k + 1})"
                demos.append(demo)
    test_users = set()
    order = list(range(len(tasks)))
    random.Random(seed).shuffle(order)
    n_test = round(len(tasks) * heldout)
    test_idx = set(order[:n_test])

    def render(task: dict) -> dict:
        chat = _Chat(task["user"])
        if style == "steps":
            calls = [(VH_ACTIONS[a][0], {"object": o}) for a, o in task["steps"]]
        else:
            calls = [c for a, o in task["steps"] for c in ((VH_ACTIONS[a][0], {}), (o, {}))] + [(VH_END[0], {})]
        chat.call(calls)
        return chat.record(answer=task["plan"], objects=task["objects"], source=task["source"])

    test = [render(t) for k, t in enumerate(tasks) if k in test_idx]
    test_users = {_norm_text(t["user"]) for k, t in enumerate(tasks) if k in test_idx}
    train = [render(t) for k, t in enumerate(tasks) if k not in test_idx]
    train += [render(d) for d in demos if _norm_text(d["user"]) not in test_users]
    train = _drop_test_overlap(train, test, stats)
    used = Counter(tok for t in tasks + demos for a, o in t["steps"] for tok in (a, f"<{o}>"))
    stats.update(train=len(train), test=len(test), tasks=len(tasks), few_shot_tasks_in_train=len(demos),
                 tools=len(toolset))
    stats["toolkens_never_used"] = sorted(t for t in ordered if t != "[END]" and not used[t])
    name = "vh" if style == "steps" else "vh-58"
    return BenchSet(name, toolset, train, test, dict(sorted(stats.items())))


def vh_allowed_pairs(bench: BenchSet) -> set[tuple[str, str]]:
    """(action tool, object) pairs in a ``vh`` BenchSet's training plans: the legality proxy."""
    pairs = set()
    for rec in bench.train:
        for m in rec["messages"]:
            for c in m.get("tool_calls") or []:
                obj = json.loads(c["function"]["arguments"]).get("object")
                if obj is not None:
                    pairs.add((c["function"]["name"], obj))
    return pairs


# ------------------------------------------------------------------ all of them

_REQUIRED = {
    "funcqa-oh": ["funcqa/train.json", "funcqa/funcqa_oh.json"],
    "funcqa-mh": ["funcqa/train.json", "funcqa/funcqa_mh.json"],
    "gsm8k-xl": ["gsm8k-xl/gsm8k_original/train.jsonl", "gsm8k-xl/test.json"],
    **{f"kamel-{n}": ["kamel/api_desc.json", "kamel/train_clean.json", f"kamel/test_first_{n}.json"]
       for n in KAMEL_SIZES},
    "vh": ["vh/func_dict.json", "vh/legal_train_v4_embedding.json"],
    "vh-58": ["vh/func_dict.json", "vh/legal_train_v4_embedding.json"],
}


def available(data_dir: Path = DATA_DIR) -> list[str]:
    """Names of the benchmarks whose source files are all present under ``data_dir``."""
    data_dir = Path(data_dir)
    return [name for name, files in _REQUIRED.items() if all((data_dir / f).is_file() for f in files)]


def load(name: str, data_dir: Path = DATA_DIR) -> BenchSet:
    """Load a benchmark by its name (see :func:`available`)."""
    if name in ("funcqa-oh", "funcqa-mh"):
        return load_funcqa(data_dir, name.split("-")[1])
    if name == "gsm8k-xl":
        return load_gsm8k_xl(data_dir)
    if name.startswith("kamel-") and name[6:].isdigit():
        return load_kamel(data_dir, int(name[6:]))
    if name == "vh":
        return load_vh(data_dir)
    if name == "vh-58":
        return load_vh(data_dir, style="toolkens")
    raise ValueError(f"unknown benchmark {name!r} (known: {', '.join(_REQUIRED)})")


def write_jsonl(records: Iterable[Mapping[str, Any]], path: Path) -> int:
    """Write records one JSON object a line (UTF-8, parent folders created); return the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_benchset(bench: BenchSet, out_dir: Path) -> Path:
    """``out_dir/<name>/{train,test}.jsonl``, ``tools.json`` and ``stats.json``."""
    target = Path(out_dir) / bench.name
    write_jsonl(bench.train, target / "train.jsonl")
    write_jsonl(bench.test, target / "test.jsonl")
    (target / "tools.json").write_text(json.dumps(bench.tools_json(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (target / "stats.json").write_text(json.dumps(bench.stats, indent=1) + "\n", encoding="utf-8")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert the tool-learning benchmarks to OpenAI chat JSONL.")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--data", type=Path, default=None, help=f"benchmark data folder (default: {DATA_DIR})")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these benchmarks only")
    args = parser.parse_args(argv)
    data_dir = args.data or default_data_dir()
    names = available(data_dir)
    if not names:
        print(f"no benchmark data under {data_dir}", file=sys.stderr)
        return 1
    if args.only:
        missing = [n for n in args.only if n not in names]
        if missing:
            print(f"not available under {data_dir}: {', '.join(missing)}", file=sys.stderr)
            return 1
        names = list(args.only)
    for name in names:
        bench = load(name, data_dir)
        target = write_benchset(bench, args.out)
        print(f"{name}: {len(bench.toolset)} tools, {len(bench.train)} train, {len(bench.test)} test -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
