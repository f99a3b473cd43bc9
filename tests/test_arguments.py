"""Schema-constrained argument decoding (toolken_agent.arguments) with SmolLM2's tokenizer.

No model is run: token-choice policies walk the mask (highest allowed id, lowest allowed
id, seeded random), which reach corners a model rarely would: empty strings, odd
unicode byte tokens, long numbers. Every walk must end ``done`` with compact JSON that
parses and validates against the tool's schema.
"""

from __future__ import annotations

import json
import random
import re
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from typing import Literal, Optional

import jsonschema
import numpy as np
import pydantic
import pytest
import torch

from toolken_agent.arguments import ArgumentConstraint, ArgumentGrammar

pytestmark = pytest.mark.real_model  # the smol_tokenizer fixture comes with the default model

MAX_STEPS = 300

NUMBERS = {
    "type": "object",
    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
    "required": ["a", "b"],
}


class Color(Enum):
    RED = "red"
    GREEN = "green"


class Point(pydantic.BaseModel):
    x: int
    y: Optional[float] = None


class PydanticArgs(pydantic.BaseModel):
    """A schema as toolken_agent.tool builds them: $defs, anyOf-null, defaults, Literal, Enum."""

    label: str = pydantic.Field(max_length=12, description="a short label")
    color: Color
    mode: Literal["fast", "slow"] = "fast"
    point: Point
    scale: Optional[float] = None


# Deterministic policies (highest / lowest allowed id) never choose to close an open
# string or array, so these schemas bound lengths; the random policy closes on its own.
# (JSON schema cannot bound a number's digits: "lowest" writes "-0.000..." forever, so
# it only walks schemas without "number" fields.)
BOUNDED = {
    "numbers": NUMBERS,
    "integers": {
        "type": "object",
        "properties": {"n": {"type": "integer"}, "k": {"type": "integer", "minimum": 0, "maximum": 99}},
        "required": ["n", "k"],
    },
    "strings_unicode": {
        "type": "object",
        "properties": {
            "text": {"type": "string", "maxLength": 10},
            "lang": {"type": "string", "enum": ["crème brûlée", "寿司", "Käse"]},
        },
        "required": ["text", "lang"],
    },
    "enum_bool": {
        "type": "object",
        "properties": {"unit": {"enum": ["celsius", "fahrenheit"]}, "exact": {"type": "boolean"}},
        "required": ["unit", "exact"],
    },
    "nested": {
        "type": "object",
        "properties": {
            "title": {"type": "string", "maxLength": 8},
            "when": {
                "type": "object",
                "properties": {"day": {"type": "integer", "minimum": 1, "maximum": 31}, "hour": {"type": "number"}},
                "required": ["day", "hour"],
            },
        },
        "required": ["title", "when"],
    },
    "arrays": {
        "type": "object",
        "properties": {
            "numbers": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 4},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 3},
        },
        "required": ["numbers", "tags"],
    },
    "optional": {
        "type": "object",
        "properties": {"x": {"type": "number"}, "base": {"anyOf": [{"type": "number"}, {"type": "null"}], "default": None}},
        "required": ["x"],
    },
    "no_arguments": {"type": "object", "properties": {}},
    "pydantic": PydanticArgs.model_json_schema(),
}

UNBOUNDED = {
    "free_strings": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "note": {"type": "string"}},
        "required": ["city", "note"],
    },
    "free_arrays": {
        "type": "object",
        "properties": {
            "numbers": {"type": "array", "items": {"type": "number"}},
            "people": {
                "type": "array",
                "items": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
            },
        },
        "required": ["numbers", "people"],
    },
}


@pytest.fixture(scope="module")
def grammar(smol_tokenizer) -> ArgumentGrammar:
    return ArgumentGrammar(smol_tokenizer)


def _highest(allowed: np.ndarray, rng: random.Random) -> int:
    return int(allowed[-1])


def _lowest(allowed: np.ndarray, rng: random.Random) -> int:
    return int(allowed[0])


def _random(allowed: np.ndarray, rng: random.Random) -> int:
    return int(allowed[rng.randrange(len(allowed))])


def _walk(constraint: ArgumentConstraint, tokenizer, choose, seed: int = 0) -> str:
    """Drive the constraint with ``choose`` until done; return the decoded text."""
    rng = random.Random(seed)
    tokens: list[int] = []
    for _ in range(MAX_STEPS):
        allowed = np.flatnonzero(constraint.mask().numpy())  # ascending token ids
        assert len(allowed), f"no token allowed after {tokenizer.decode(tokens)!r}"
        token = choose(allowed, rng)
        constraint.advance(token)
        tokens.append(token)
        if constraint.done:
            return tokenizer.decode(tokens)
    raise AssertionError(f"not done after {MAX_STEPS} tokens: {tokenizer.decode(tokens)!r}")


def _closing_random(tokenizer, vocab_size: int):
    """Random tokens, but half the time one that closes a string, array or object."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    closer = np.zeros(vocab_size, dtype=bool)
    closer[: len(texts)] = [any(c in t for c in '"]}') for t in texts]

    def choose(allowed: np.ndarray, rng: random.Random) -> int:
        if rng.random() < 0.5:
            closing = allowed[closer[allowed]]
            if len(closing):
                return int(closing[0])
        return int(allowed[rng.randrange(len(allowed))])

    return choose


@pytest.fixture(scope="module")
def closing_random(smol_tokenizer, grammar):
    return _closing_random(smol_tokenizer, grammar.vocab_size)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _check(text: str, schema: dict) -> None:
    value = json.loads(text)
    jsonschema.validate(value, schema)
    assert isinstance(value, dict)
    outside_strings = _STRING.sub('""', text)
    assert not re.search(r"\s", outside_strings), f"whitespace outside strings: {text!r}"
    order = list(schema.get("properties", {}))
    assert list(value) == [k for k in order if k in value], f"keys out of schema order: {text!r}"
    assert set(value) <= set(order), f"keys outside the schema: {text!r}"


def _has_float(schema: dict) -> bool:
    return '"number"' in json.dumps(schema)


POLICY_WALKS = [
    pytest.param(name, policy, id=f"{policy.__name__[1:]}-{name}")
    for policy in (_highest, _lowest, _random)
    for name in sorted(BOUNDED)
    if not (policy is _lowest and _has_float(BOUNDED[name]))
]


@pytest.mark.parametrize(("name", "policy"), POLICY_WALKS)
def test_policy_walks_end_done_with_valid_compact_json(grammar, smol_tokenizer, name, policy):
    schema = BOUNDED[name]
    for seed in range(3 if policy is _random else 1):
        text = _walk(grammar.constraint(schema), smol_tokenizer, policy, seed)
        _check(text, schema)


@pytest.mark.parametrize("name", sorted(BOUNDED) + sorted(UNBOUNDED))
def test_random_walks_close_and_validate(grammar, smol_tokenizer, closing_random, name):
    schema = {**BOUNDED, **UNBOUNDED}[name]
    for seed in range(5):
        _check(_walk(grammar.constraint(schema), smol_tokenizer, closing_random, seed), schema)


def test_first_token_opens_the_object(grammar, smol_tokenizer):
    allowed = grammar.constraint(NUMBERS).mask().nonzero().flatten().tolist()  # a handful
    assert allowed and all(smol_tokenizer.decode([t]).startswith("{") for t in allowed)


def test_tokens_the_model_would_write_are_accepted(grammar, smol_tokenizer):
    schema = BOUNDED["strings_unicode"]
    text = '{"text":"brûlée 寿","lang":"寿司"}'
    constraint = grammar.constraint(schema)
    for token in smol_tokenizer.encode(text, add_special_tokens=False):
        assert not constraint.done
        constraint.advance(token)
    assert constraint.done


def test_done_right_after_closing_brace(grammar, smol_tokenizer):
    constraint = grammar.constraint(NUMBERS)
    tokens = smol_tokenizer.encode('{"a":12,"b":7}', add_special_tokens=False)
    for token in tokens[:-1]:
        constraint.advance(token)
        assert not constraint.done
    constraint.advance(tokens[-1])
    assert constraint.done
    allowed = constraint.mask().nonzero().flatten().tolist()
    assert allowed == [smol_tokenizer.eos_token_id]


def test_disallowed_token_raises_and_keeps_state(grammar, smol_tokenizer):
    constraint = grammar.constraint(NUMBERS)
    for token in smol_tokenizer.encode('{"a":1', add_special_tokens=False):
        constraint.advance(token)
    before = constraint.mask()
    letter = smol_tokenizer.encode("x", add_special_tokens=False)[0]
    space = smol_tokenizer.encode(" ", add_special_tokens=False)[0]
    for bad in (letter, space, smol_tokenizer.eos_token_id, -1, grammar.vocab_size):
        with pytest.raises(ValueError):
            constraint.advance(bad)
    assert torch.equal(constraint.mask(), before)
    for token in smol_tokenizer.encode(',"b":2}', add_special_tokens=False):
        constraint.advance(token)
    assert constraint.done


def test_masks_have_the_model_vocab_width(smol_tokenizer):
    padded = len(smol_tokenizer) + 64
    grammar = ArgumentGrammar(smol_tokenizer, vocab_size=padded)
    constraint = grammar.constraint(NUMBERS)
    mask = constraint.mask()
    assert mask.shape == (padded,) and mask.dtype == torch.bool
    assert not mask[len(smol_tokenizer):].any()
    assert ArgumentGrammar(smol_tokenizer).constraint(NUMBERS).mask().shape == (len(smol_tokenizer),)
    with pytest.raises(ValueError):
        ArgumentGrammar(smol_tokenizer, vocab_size=len(smol_tokenizer) - 1)


def test_the_constraint_masks_scores_as_a_logits_processor(grammar):
    constraint = grammar.constraint(NUMBERS)
    mask = constraint.mask()
    ids = torch.zeros(1, 3, dtype=torch.long)  # not read: the state comes from advance()
    logits = torch.randn(1, grammar.vocab_size)
    out = constraint(ids, logits)
    assert out.shape == logits.shape and out.dtype == logits.dtype
    assert torch.equal(out[0, mask], logits[0, mask])
    assert torch.isneginf(out[0, ~mask]).all()
    assert torch.equal(logits.isfinite(), torch.ones_like(logits, dtype=torch.bool))  # the input is left as it was
    low = constraint(ids, logits.to(torch.bfloat16))
    assert low.dtype == torch.bfloat16 and int(low.argmax()) in mask.nonzero().flatten().tolist()
    for wrong in (torch.zeros(1, grammar.vocab_size + 1), torch.zeros(2, grammar.vocab_size), torch.zeros(grammar.vocab_size)):
        with pytest.raises(ValueError):
            constraint(ids, wrong)


def test_greedy_over_processed_logits_ends_valid(grammar, smol_tokenizer):
    """The loop a caller writes, with random logits standing in for the model."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.zeros(1, 0, dtype=torch.long)
    for schema in (NUMBERS, BOUNDED["pydantic"], BOUNDED["nested"]):
        constraint = grammar.constraint(schema)
        tokens = []
        for _ in range(MAX_STEPS):
            logits = torch.randn(1, grammar.vocab_size, generator=generator)
            token = int(constraint(ids, logits).argmax())
            constraint.advance(token)
            tokens.append(token)
            if constraint.done:
                break
        _check(smol_tokenizer.decode(tokens), schema)


def test_extra_keys_are_not_generated_unless_the_schema_allows_them(grammar, smol_tokenizer):
    closed = grammar.constraint({"type": "object", "properties": {"a": {"type": "integer"}}})
    for token in smol_tokenizer.encode('{"a":1', add_special_tokens=False):
        closed.advance(token)
    comma = smol_tokenizer.encode(",", add_special_tokens=False)[0]
    assert not closed.mask()[comma]
    open_schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": True}
    opened = grammar.constraint(open_schema)
    for token in smol_tokenizer.encode('{"a":1,"z":2}', add_special_tokens=False):
        opened.advance(token)
    assert opened.done


def test_compiled_schemas_are_cached_and_states_independent(grammar, smol_tokenizer):
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    first = grammar.constraint(schema)
    second = grammar.constraint(json.loads(json.dumps(schema)))
    assert len([k for k in grammar._cache if '"q"' in k]) == 1
    for token in smol_tokenizer.encode('{"q":"hi"}', add_special_tokens=False):
        first.advance(token)
    assert first.done and not second.done
    assert torch.equal(second.mask(), grammar.constraint(schema).mask())


def test_bad_schemas_raise_value_error(grammar):
    with pytest.raises(ValueError):
        grammar.constraint({"type": "object", "properties": {"a": {"type": "no-such-type"}}})
    with pytest.raises(ValueError):
        grammar.constraint({"type": "array", "items": {"type": "number"}})
    with pytest.warns(UserWarning):  # an unimplemented keyword is dropped, with a warning
        grammar.constraint({"type": "object", "properties": {"a": {"not": {"type": "string"}}}})


def test_shared_grammar_across_threads(smol_tokenizer, closing_random):
    grammar = ArgumentGrammar(smol_tokenizer)
    schemas = [BOUNDED["numbers"], BOUNDED["nested"], BOUNDED["pydantic"], UNBOUNDED["free_arrays"]]

    def job(i: int) -> tuple[str, dict]:
        schema = schemas[i % len(schemas)]
        return _walk(grammar.constraint(schema), smol_tokenizer, closing_random, seed=i), schema

    with ThreadPoolExecutor(max_workers=4) as pool:
        for text, schema in pool.map(job, range(16)):
            _check(text, schema)
