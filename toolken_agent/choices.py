"""A field with a fixed set of values (a JSON-schema ``enum``), chosen with the prompt's bias taken out.

A small model writing ``"to_currency":"`` leans to the values its prompt names or that
are common in text (``USD``) whatever the request says: on the default model "how many
Swiss francs" scores ``USD`` above ``CHF``. Scoring each whole value given the request
and given a request with no content (``"N/A"``), and keeping the value whose score rose
most, cancels that lean (contextual calibration, Zhao et al. 2021, "Calibrate Before
Use"); the decoder then writes the chosen value's tokens through the grammar. The
content-free score is the field's as the first one written: given the fields before it,
as the request's score is, it would count what those fields already say twice
(``from_currency`` written, the same currency would rise for ``to_currency``).

The values scored are those the grammar still allows: values the request names as words
hold the field first (:func:`toolken_agent.provenance.grounded_choices`), and as fields
are written, :func:`values_left` narrows them: a named value goes to one field, and a
field left once they are taken takes a value the request does not name. That one is
scored for every tool: it is where the lean shows ("80 EUR ... Swiss francs", the
``to_currency`` left: ``USD``).

Other values are scored only for a tool shown no examples of its own (zero-shot, or
trained from data without its calls): its own demonstrations already show the model how
requests map to values, and there the calibration gained within noise while making
rarer values win (docs/design-notes.md, "Enum values, calibrated").
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping, Sequence

from .tool import schema_node

__all__ = ["CONTENT_FREE", "MAX_CHOICES", "choice_fields", "enum_branch", "value_starting", "values_left", "written_value"]

CONTENT_FREE = "N/A"  # the request of the calibration prompt: one that asks for nothing
MAX_CHOICES = 32  # a longer enum is written token by token (scoring every value costs a pass each)


def choice_fields(schema: Mapping[str, Any]) -> dict[str, list[str]]:
    """The top-level fields of ``schema`` whose value is one of 2 to :data:`MAX_CHOICES` strings (:func:`enum_branch`)."""
    found = {}
    for name, field in (schema.get("properties") or {}).items():
        branch = enum_branch(field, schema)
        if branch is not None:
            found[name] = list(dict.fromkeys(schema_node(branch, schema)["enum"]))
    return found


def enum_branch(field: Any, root: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The part of ``field`` that holds its string choices: itself, or one branch of its ``anyOf``; ``None`` if neither.

    A field may hold them itself, through a local ``$ref`` (a Python ``Enum``), or in one
    branch of an ``anyOf`` (``Optional[Literal[...]]``): the choice is made only once the
    grammar has opened a string there.
    """
    if not isinstance(field, Mapping):
        return None
    for branch in [field, *(b for b in field.get("anyOf", ()) if isinstance(b, Mapping))]:
        values = schema_node(branch, root).get("enum")
        if isinstance(values, list) and 2 <= len(values) <= MAX_CHOICES and all(isinstance(v, str) for v in values):
            return branch
    return None


def value_starting(text: str, fields: Mapping[str, Any]) -> str | None:
    """The field of ``fields`` whose string value opens at the end of ``text`` (compact JSON), if any."""
    for name in fields:
        if text.endswith(json.dumps(name) + ':"'):  # a quote inside a string is escaped: this is the key
            return name
    return None


def written_value(text: str, name: str) -> str | None:
    """The string value of field ``name`` in the argument text so far (compact JSON), if it is written and closed."""
    match = re.search(re.escape(json.dumps(name)) + r':("(?:[^"\\]|\\.)*")', text)
    return json.loads(match.group(1)) if match else None


def values_left(name: str, fields: Mapping[str, Sequence[str]], named: Sequence[str], text: str,
                order: Sequence[tuple[str, str]] = (), bound: Sequence[str] = (),
                after_number: Sequence[str] = ()) -> list[str] | None:
    """The values field ``name`` may still take, given the values the request names; ``None``: any the grammar allows.

    ``fields``: every enum field and its values; ``named``: the values of ``name``'s set the
    request names, in order of mention (:func:`toolken_agent.provenance.named_values`);
    ``text``: the arguments written so far; ``after_number``: the named values the request
    writes right after a number. From the tool's examples: ``bound``, the fields that take
    the value a number goes with (:func:`toolken_agent.provenance.number_bound`), and
    ``order``, pairs of fields whose values they name in that order
    (:func:`toolken_agent.provenance.choice_order`).
    Among the fields sharing ``name``'s values:

    * the one value a number goes with, for the one field left that takes it ("How many
      yards are in 1 mile?": ``from_unit`` mile);
    * the named values not yet taken, where they are as many as the fields left to write
      (each must go somewhere); just the one the examples' order gives this field, if it
      orders the fields left;
    * where every named value is taken and the request names fewer than the fields, the
      values it does not name: "80 EUR ... how many Swiss francs" calls the other currency
      otherwise, and left to itself a small model writes the one its prompt leans to
      (``USD``); the caller scores what is left (:mod:`.choices`).
    """
    if not named:
        return None
    group = [f for f, values in fields.items() if list(values) == list(fields[name])]
    others = {f: written_value(text, f) for f in group if f != name}
    untaken = [v for v in named if v not in others.values()]
    left = [name, *(f for f, value in others.items() if value is None)]
    tied = [v for v in untaken if v in after_number]
    holders = [f for f in left if f in bound]
    if len(tied) == 1 and len(holders) == 1:
        if holders == [name]:
            return tied
        untaken, left = [v for v in untaken if v != tied[0]], [f for f in left if f != holders[0]]
    if not untaken:
        return [v for v in fields[name] if v not in named] if len(named) < len(group) else None
    if len(untaken) != len(left):
        return None
    before = [f for f in left if (f, name) in order]
    if len(before) + sum((name, f) in order for f in left) == len(left) - 1:  # ordered against every other
        return [untaken[len(before)]]
    return untaken
