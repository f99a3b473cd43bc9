"""Guarantee: arbitrary input gives a result or the library's own error, never a crash.

Property tests (hypothesis) over what a model or a user can put in front of the library:
argument values against tool schemas, argument text a model wrote, random walks through
the argument grammar, OpenAI messages, message rendering, JSONL data files, and the
values tools return. Each property has its own ``max_examples``; the counts actually run
are printed at the end of the module (``pytest -s``).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Add, WeatherNow
from toolken_agent.chat_format import ChatFormat, arguments_text
from toolken_agent.conversation import Message, ToolCall, parse_messages
from toolken_agent.data import load_jsonl
from toolken_agent.errors import DataError
from toolken_agent.executor import result_text, run_tool
from toolken_agent.tool import ArgumentsError, Tool, ToolSpec, parse_arguments, to_spec
from toolken_agent.toolset import make_toolset

CASES: Counter[str] = Counter()


def fuzz(examples: int):
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module", autouse=True)
def report_case_counts():
    yield
    lines = [f"  {name}: {count}" for name, count in sorted(CASES.items())]
    print(f"\nfuzz cases run: {sum(CASES.values())}\n" + "\n".join(lines))


# -- strategies ------------------------------------------------------------------------
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
objects = st.dictionaries(st.sampled_from(["a", "b", "city", "text", "numbers", "unit", "point", "x", ""]) | st.text(max_size=6),
                          json_values, max_size=5)
arguments = objects | json_values  # mostly objects: that is what a tool call holds


class Unit(Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Point(pydantic.BaseModel):
    x: float
    y: float = 0.0


class Everything(Tool):
    """A tool with one argument of every common kind."""

    def run(self, text: str, count: int, ratio: float, flag: bool, numbers: list[float], unit: Unit,
            point: Point, mode: Literal["fast", "slow"] = "fast", note: Optional[str] = None) -> str:
        return "ok"


def json_schema_tool() -> ToolSpec:
    """A tool given as a bare JSON schema, validated by jsonschema (as LangChain dicts are)."""
    return ToolSpec("lookup", "Look something up.", {
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "maxLength": 50},
            "limit": {"type": "integer", "minimum": 1, "maximum": 100},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
            "filters": {"type": "object", "additionalProperties": {"type": ["string", "number", "null"]}},
            "exact": {"type": "boolean"},
            "sort": {"enum": ["asc", "desc"]},
        },
        "required": ["query"],
        "additionalProperties": False,
    }, func=lambda **kwargs: "ok")


def langchain_tool() -> ToolSpec:
    from langchain_core.tools import tool

    @tool
    def convert(amount: float, to: str, rounding: int = 2) -> float:
        """Convert an amount of dollars into another currency."""
        return amount

    return to_spec(convert)


SPECS = {"pydantic": to_spec(Everything), "json-schema": json_schema_tool(), "langchain": langchain_tool(),
         "add": to_spec(Add)}


def accepted(spec: ToolSpec, check: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """What ``check`` returns, or None if it raised ``ArgumentsError``; anything else fails the test."""
    try:
        return check()
    except ArgumentsError as exc:
        assert str(exc).startswith(f"{spec.name}: ") and "\n" not in str(exc)
        return None


# -- argument values against schemas ---------------------------------------------------
@pytest.mark.parametrize("kind", SPECS)
@fuzz(examples=600)
@given(args=arguments)
def test_validate_returns_declared_keywords_or_raises_arguments_error(kind, args):
    CASES[f"validate/{kind}"] += 1
    spec = SPECS[kind]
    kwargs = accepted(spec, lambda: spec.validate(args))
    if kwargs is not None:
        assert set(kwargs) <= set(spec.parameters.get("properties", {}))


@fuzz(examples=300)
@given(a=st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**15, 10**15),
       b=st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**15, 10**15))
def test_arguments_that_fit_the_schema_are_accepted_unchanged(a, b):
    CASES["validate/valid add"] += 1
    assert SPECS["add"].validate({"a": a, "b": b}) == {"a": a, "b": b}


# -- argument text a model wrote --------------------------------------------------------
def mangled_json(value: Any) -> st.SearchStrategy[str]:
    """JSON text of ``value``, cut short or with a character changed: the ways generation goes wrong."""
    text = json.dumps(value)
    return st.one_of(st.just(text), st.integers(0, len(text)).map(lambda n: text[:n]),
                     st.tuples(st.integers(0, len(text)), st.characters()).map(lambda p: text[:p[0]] + p[1] + text[p[0] + 1:]))


argument_texts = st.text(max_size=60) | arguments.flatmap(mangled_json) | st.sampled_from(
    ["[" * 5000, "{" * 5000, '{"a": ' + "9" * 5000 + "}", "NaN", "-Infinity", '{"a": 1e999, "b": 1}', '"\\ud800"'])


@pytest.mark.parametrize("kind", SPECS)
@fuzz(examples=500)
@given(text=argument_texts)
def test_argument_text_parses_to_valid_arguments_or_raises_arguments_error(kind, text):
    CASES[f"parse_arguments/{kind}"] += 1
    spec = SPECS[kind]
    args = accepted(spec, lambda: parse_arguments(spec, text))
    if args is not None:
        spec.validate(args)  # what parse_arguments returns always validates


# -- the argument grammar --------------------------------------------------------------
@pytest.fixture(scope="module")
def grammar(tiny_lm):
    from toolken_agent.arguments import ArgumentGrammar

    return ArgumentGrammar(tiny_lm.tokenizer, tiny_lm.vocab_size)


GRAMMAR_SPECS = {name: SPECS[name] for name in ("add", "json-schema", "langchain")} | {"weather": to_spec(WeatherNow)}


@pytest.mark.parametrize("kind", GRAMMAR_SPECS)
@fuzz(examples=60)
@given(choices=st.lists(st.integers(0, 10**6), min_size=400, max_size=400))
def test_any_walk_the_grammar_allows_is_valid_arguments_once_done(grammar, tiny_lm, kind, choices):
    """A model can only pick allowed tokens; whichever it picks, finished text is valid."""
    CASES[f"grammar walk/{kind}"] += 1
    spec = GRAMMAR_SPECS[kind]
    constraint = grammar.constraint(dict(spec.parameters))
    ids: list[int] = []
    for choice in choices:
        if constraint.done:
            break
        allowed = constraint.mask().nonzero().flatten().tolist()
        assert allowed, "the grammar left no token to choose"
        # Mostly the lowest ids (short ASCII tokens, which close strings and numbers), sometimes any.
        token = allowed[choice % len(allowed)] if choice % 3 == 0 else allowed[choice % min(len(allowed), 8)]
        constraint.advance(token)
        ids.append(token)
    if constraint.done:
        CASES[f"grammar walk/{kind} (finished)"] += 1
        args = parse_arguments(spec, tiny_lm.tokenizer.decode(ids))
        assert set(args) <= set(spec.parameters.get("properties", {}))


# -- OpenAI messages -------------------------------------------------------------------
roles = st.sampled_from(["system", "user", "assistant", "tool", "robot", "", None])
content = st.none() | st.text(max_size=30) | st.lists(
    st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]), "text": st.text(max_size=10)}), max_size=3) | json_values
raw_calls = st.lists(st.fixed_dictionaries({
    "id": st.none() | st.text(max_size=5) | st.integers(),
    "type": st.just("function"),
    "function": st.fixed_dictionaries({"name": st.sampled_from(["add", "weather_now", "fly"]) | json_values,
                                       "arguments": argument_texts | objects | json_values}),
}) | json_values, max_size=2)
raw_messages = st.fixed_dictionaries({"role": roles, "content": content}, optional={"tool_calls": raw_calls,
                                                                                     "tool_call_id": json_values})
message_lists = st.lists(raw_messages | json_values, max_size=4) | json_values


@fuzz(examples=800)
@given(raw=message_lists)
def test_message_parsing_returns_messages_or_raises_value_error(raw):
    CASES["parse_messages"] += 1
    try:
        messages = parse_messages(raw)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    assert messages and all(m.role in ("system", "user", "assistant", "tool") for m in messages)
    assert all(isinstance(m.content, str) for m in messages)
    assert all(isinstance(c.args, dict) for m in messages for c in m.tool_calls)


# -- rendering -------------------------------------------------------------------------
TOOL_NAMES = ["add", "weather_now"]
unicode_text = st.text(max_size=40) | st.sampled_from(
    ["<|im_end|>", "<|im_start|>assistant\n", "<|endoftext|>", "\x000\x00", "\x001\x00", "{{ raise('x') }}",
     "{% for m in messages %}", "<tool_call>\n{}", "</tool_response>", "\u202e\u200b\ufeff", "\r\n\t"])
calls = st.lists(st.builds(ToolCall, st.sampled_from(TOOL_NAMES), objects, st.none() | st.text(max_size=6)), max_size=2)


@st.composite
def conversations(draw) -> list[Message]:
    out = []
    for _ in range(draw(st.integers(1, 4))):
        role = draw(st.sampled_from(["system", "user", "assistant", "tool"]))
        text = draw(unicode_text)
        tool_calls = tuple(draw(calls)) if role == "assistant" else ()
        out.append(Message(role, text, tool_calls=tool_calls, tool_call_id=draw(st.none() | st.text(max_size=4))))
    return out


@pytest.fixture(scope="module")
def chat_format(tiny_lm) -> ChatFormat:
    return ChatFormat(tiny_lm.tokenizer, TOOL_NAMES, tiny_lm.vocab_size)


SPECIAL = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")


@fuzz(examples=700)
@given(messages=conversations(), generation_prompt=st.booleans(), train=st.booleans())
def test_rendering_keeps_every_content_as_text_and_in_order(chat_format, tiny_lm, messages, generation_prompt, train):
    CASES["render"] += 1
    rendered = chat_format.render(messages, add_generation_prompt=generation_prompt, train=train)
    tok = tiny_lm.tokenizer
    special_ids = {tok.convert_tokens_to_ids(t) for t in SPECIAL}
    # Only the template makes special tokens: 2 per message (+2 for the default system turn).
    turns = len(messages) + (messages[0].role != "system")
    assert sum(i in special_ids for i in rendered.input_ids) == 2 * turns + generation_prompt
    text = tok.decode(rendered.input_ids)
    at = 0
    for message in messages:  # each content and each call's arguments, verbatim and in order
        for piece in [message.content] + [arguments_text(dict(c.args)) for c in message.tool_calls]:
            found = text.find(piece, at)
            assert found >= 0, (piece, text)
            at = found + len(piece)
    assert len(rendered.positions) == len(rendered.targets) == len(rendered.decisions)
    assert all(0 <= p < len(rendered.input_ids) for p in rendered.positions)
    assert all(0 <= t < tiny_lm.vocab_size + len(TOOL_NAMES) for t in rendered.targets)
    if not train:
        assert rendered.positions == []


with_surrogates = st.tuples(st.text(max_size=20), st.lists(st.integers(0xD800, 0xDFFF), min_size=1, max_size=3),
                           st.text(max_size=20)).map(lambda p: p[0] + "".join(map(chr, p[1])) + p[2])


@fuzz(examples=500)
@given(text=st.text(max_size=40) | with_surrogates)
def test_any_string_renders_and_valid_text_round_trips(chat_format, tiny_lm, text):
    """Including lone surrogates, which a JSON escape (``"\\ud800"``) or a LangChain message can carry."""
    CASES["encode round trip"] += 1
    ids = chat_format.encode_text(text)
    decoded = tiny_lm.tokenizer.decode(ids)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert decoded == "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    else:
        assert decoded == text
    chat_format.render([Message("user", text), Message("assistant", text)], add_generation_prompt=True, train=True)


# -- data files ------------------------------------------------------------------------
TOOLSET = make_toolset([Add, WeatherNow], "fuzz")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-data") / "data.jsonl"


def good_line() -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}).encode()


records = st.fixed_dictionaries({"messages": message_lists}) | json_values
lines = st.binary(max_size=60).map(lambda b: b.replace(b"\n", b" ")) | records.map(
    lambda r: json.dumps(r).encode()) | st.just(good_line()) | st.sampled_from([b"[" * 5000, b'{"messages": ' + b"1" * 5000 + b"}"])


def check_loading(path: Path, body: list[bytes]) -> None:
    path.write_bytes(b"\n".join(body) + b"\n")
    lines_read = [body[0].removeprefix(b"\xef\xbb\xbf"), *body[1:]]  # a byte order mark is not data
    non_blank = sum(1 for b in lines_read if b.strip())
    try:
        report = load_jsonl(path, TOOLSET)
    except DataError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(f"{path}:")
        if exc.line is not None:
            assert 1 <= exc.line <= len(body) and message.startswith(f"{path}:{exc.line}: ")
    else:
        assert len(report.conversations) == report.lines == non_blank and report.skipped == 0
    try:
        report = load_jsonl(path, TOOLSET, lenient=True)
    except DataError as exc:  # lenient loading fails only when nothing at all is usable
        assert exc.line is None and "no usable conversations" in str(exc)
        return
    assert len(report.conversations) + report.skipped == report.lines == non_blank


@fuzz(examples=400)
@given(body=st.lists(lines, min_size=1, max_size=6))
def test_any_jsonl_file_loads_or_names_the_bad_line(data_file, body):
    CASES["load_jsonl/lines"] += 1
    check_loading(data_file, body)


@fuzz(examples=300)
@given(blob=st.binary(max_size=300))
def test_any_bytes_at_all_load_or_fail_with_a_data_error(data_file, blob):
    CASES["load_jsonl/bytes"] += 1
    check_loading(data_file, blob.split(b"\n"))


# -- tool results ----------------------------------------------------------------------
class Weird:
    content = property(lambda self: 1 / 0)  # looks like a message, fails when read


results = json_values | st.builds(object) | st.builds(Weird) | st.sets(st.integers(), max_size=3) | st.binary(max_size=5) \
    | st.sampled_from([math.nan, math.inf, -math.inf, 10**5000, "x" * 30_000])


@fuzz(examples=500)
@given(value=results)
def test_whatever_a_tool_returns_is_text_or_an_error_result(value):
    CASES["tool results"] += 1
    outcome = run_tool(ToolSpec("t", "Return a value.", {"type": "object", "properties": {}}, lambda: value), {})
    assert isinstance(outcome.content, str) and len(outcome.content) <= 20_100
    if not outcome.is_error:
        assert outcome.content == result_text(value)
    else:
        assert outcome.content.startswith("Error: ") and "\n" not in outcome.content
