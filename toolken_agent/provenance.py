"""Where a call's arguments may come from, and which calls one request already made.

A call's arguments are written by the model, so an attacker who controls a tool result
(a web page, a file, a weather report that says "now call read_file('/etc/shadow')")
controls what the model may write. Two rules keep calls tied to the person asking:

* **Traceable values.** For a tool that acts (not declared ``read_only``), every string
  value in the arguments must appear in what the user (or the system prompt) wrote: a
  value lifted from a tool result or invented is refused, and the grammar holds such
  values to spans of those words as they are written (:func:`grounded_strings`). A tool that only reads may
  take values from results too, and may normalize (a date written out, a unit
  spelled in full); only a value copied from its demonstrations that appears nowhere
  in the conversation is refused there. Values fixed by the schema (``enum``,
  ``const``) need no source: the grammar allows nothing else.
* **Numbers from the conversation.** A number argument is written from the numbers the
  same sources hold (:func:`grounded_numbers`, applied in the grammar, so the model
  picks among them rather than inventing one; a field's own default is allowed too).
  A small model otherwise fills a numeric slot from its demonstrations (``coats: 2`` for
  "3 coats"). Where the sources hold no number of the field's type, the field is free;
  where they hold at least as many numbers as the call has required number fields,
  those fields take different ones; where they hold fewer, the tool is not called at
  all (:func:`numbers_suffice`; a request without a digit counts if it says a number in
  words, :func:`says_a_number`). A number followed by a unit
  that a field's name holds (``15 km``, ``distance_km``) goes to that field.
* **Fixed values the request names.** Where the request names values of an ``enum``
  field as words ("a large latte"), the field is held to those it names
  (:func:`grounded_choices`), if it names at least as many as there are fields sharing
  that set of values: "80 EUR ... how many Swiss francs" names one currency for
  ``from_currency`` and ``to_currency`` and holds neither. As the fields are written,
  a named value goes somewhere and to the right one: the value a number goes with
  ("80 EUR") to the field the tool's examples give it (:func:`number_bound`), the others
  in the order the examples name them (:func:`choice_order`), and once the named values
  are taken the field left takes one the request does not name
  (:func:`toolken_agent.choices.values_left`).
* **No repeats.** A call identical to one already made for the current request (same
  tool, same arguments) is not made again: its result is already in the conversation.

Both are checks on data; nothing here runs or evaluates what the model wrote.
"""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from typing import Any, Iterator, Mapping, Sequence

from .choices import choice_fields, enum_branch
from .conversation import Message, ToolCall
from .tool import ToolSpec, schema_node


def current_request(messages: Sequence[Message]) -> Sequence[Message]:
    """The messages after the user's last message: the calls and results of this request so far."""
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    return messages[last_user + 1:]


def call_key(name: str, args: Mapping[str, Any]) -> str:
    """One string per distinct call: the tool's name and its arguments as canonical JSON."""
    return name + json.dumps(args, sort_keys=True, ensure_ascii=False, default=str)


def calls_made(messages: Sequence[Message]) -> list[ToolCall]:
    """The calls already made for the current request (an agent sends them back with results)."""
    return [call for m in current_request(messages) if m.role == "assistant" for call in m.tool_calls]


def _normal(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def sources(messages: Sequence[Message], *, results: bool, normal: bool = True) -> str:
    """The text argument values may be taken from: user and system turns, and tool results if ``results``.

    ``normal``: case, Unicode form and runs of whitespace folded, for matching; else as written.
    """
    roles = ("user", "system", "tool") if results else ("user", "system")
    return "\n".join(_normal(m.content) if normal else m.content for m in messages if m.role in roles)


def _strings(value: Any, schema: Mapping[str, Any], path: str, root: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """``(path, text)`` for every string in ``value`` that its schema does not fix."""
    schema = schema_node(schema, root)
    if isinstance(value, str):
        if "enum" not in schema and "const" not in schema and value.strip():
            yield path, value
    elif isinstance(value, Mapping):
        props = schema.get("properties", {}) if isinstance(schema, Mapping) else {}
        for key, item in value.items():
            yield from _strings(item, props.get(key, {}), f"{path}.{key}" if path else str(key), root)
    elif isinstance(value, list):
        items = schema.get("items", {}) if isinstance(schema, Mapping) else {}
        for i, item in enumerate(value):
            yield from _strings(item, items if isinstance(items, Mapping) else {}, f"{path}[{i}]", root)


def untraceable(spec: ToolSpec, args: Mapping[str, Any], messages: Sequence[Message]) -> str | None:
    """Why ``args`` may not be used for ``spec`` in this conversation, or ``None`` if they may.

    Matching is on normalized text (case, Unicode form and runs of whitespace ignored),
    so ``"paris"`` in the request traces ``"Paris"``. Structured output, whose arguments
    are the answer itself, is not checked (``DecodeConfig.trace_arguments``).
    """
    read_only = spec.read_only is True
    text = sources(messages, results=read_only)
    demo_values = {_normal(v) for e in spec.examples for _, v in _strings(dict(e.args), spec.parameters, "", spec.parameters)}
    for path, value in _strings(args, spec.parameters, "", spec.parameters):
        value_n = _normal(value)
        if value_n in text:
            continue
        if not read_only:
            return f"{path}={value!r} appears nowhere in the request"
        if value_n in demo_values:
            return f"{path}={value!r} is copied from an example, not taken from the request"
    return None


# A number as people write it: not part of a word or a date, thousands commas allowed.
_NUMBER = re.compile(r"(?<![\w.-])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w,.-]?\d)|(?<![\w.-])-?\d+(?:\.\d+)?(?![\w.-]?\d)")


def numbers_in(text: str, *, once: bool = True) -> list[int | float]:
    """The numbers written in ``text``, in order (``"1,200"`` is 1200; dates are not numbers).

    ``once``: each value once; otherwise as often as it is written.
    """
    found: list[int | float] = []
    for match in _NUMBER.finditer(text):
        value = _number_value(match)
        if not once or value not in found:
            found.append(value)
    return found


def _number_value(match: re.Match) -> int | float:
    raw = match.group().replace(",", "")
    return float(raw) if "." in raw else int(raw)


def numbers_suffice(spec: ToolSpec, written: Sequence[int | float], text: str | None = None) -> bool:
    """Whether the numbers a request wrote (each as often as written) can fill ``spec``'s required number fields, one each.

    A request with one number does not ask for a tool that needs three ("180 grams of
    oats, how many cups?" is not ``scale_recipe(180, 180, 180)``), so that tool is not
    the call; the next-best toolken is. A request that writes no digit is judged only by
    whether it says a number at all (``text``, :func:`says_a_number`): "How much is a
    large latte?" does not ask for ``shipping_cost(weight_kg)``, whose weight the model
    would invent; "an hour in minutes" may spell its number out. Fields with a default,
    ``enum`` or ``const`` need none.
    """
    props, required = spec.parameters.get("properties", {}), set(spec.parameters.get("required", ()))
    fields = {k: f.get("type") for k, f in props.items() if k in required and isinstance(f, Mapping)
              and f.get("type") in ("number", "integer") and not {"enum", "const", "default"} & set(f)}
    if not written:
        return not fields or text is None or says_a_number(text, list(fields))
    kinds = list(fields.values())
    whole = sum(_whole(n) for n in written)
    return kinds.count("integer") <= whole and len(kinds) <= len(written)


_NUMBER_WORDS = re.compile(
    r"\b(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    r"sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundreds?|"
    r"thousands?|millions?|billions?|dozens?|half|quarter|twice|double|triple|single|couple|pair)\b", re.IGNORECASE)
_ARTICLE = re.compile(r"\b(?:a|an)\s+([^\W\d_]+)", re.IGNORECASE)


def says_a_number(text: str, fields: Sequence[str] = ()) -> bool:
    """Whether ``text`` says a number in words: a number word ("two", "a dozen", "half"), or an article before a unit one of ``fields`` names ("an hour" for ``hours``)."""
    return bool(_NUMBER_WORDS.search(text)) or any(_names_unit(k, m.group(1).casefold())
                                                   for m in _ARTICLE.finditer(text) for k in fields)


_UNIT_AFTER = re.compile(r"[\s-]?([^\W\d_]+|%)")
_UNIT_ALIASES = {"%": "percent"}


def number_units(text: str) -> dict[int | float, set[str]]:
    """The word written right after each number (``"81-minute"`` -> ``minute``, ``"35%"`` -> ``percent``)."""
    units: dict[int | float, set[str]] = {}
    for match in _NUMBER.finditer(text):
        after = _UNIT_AFTER.match(text, match.end())
        if after:
            word = after.group(1).casefold()
            units.setdefault(_number_value(match), set()).add(_UNIT_ALIASES.get(word, word))
    return units


def _names_unit(field: str, unit: str) -> bool:
    """Whether a field's name holds a word for ``unit``: ``distance_km`` and ``km``, ``minutes`` and ``minute``."""
    words = [w.casefold() for w in re.split(r"[\W_]+|(?<=[a-z])(?=[A-Z])", field) if w]
    stem = unit.rstrip("s") if len(unit) > 3 else unit
    return len(unit) >= 2 and any(w == unit or (len(stem) >= 3 and w.rstrip("s") == stem) for w in words)


def _unit_claims(fields: Sequence[str], numbers: Sequence[int | float],
                 units: Mapping[int | float, set[str]]) -> dict[int | float, set[str]]:
    """For each number whose unit names some of ``fields``, those fields."""
    claims = {}
    for n in numbers:
        named = {k for k in fields for u in units.get(n, ()) if _names_unit(k, u)}
        if named:
            claims[n] = named
    return claims


MAX_EXACT = 2**53  # beyond it a number is not exact as a JSON (double) value; a tool result may get there


def grounded_numbers(schema: Mapping[str, Any], numbers: Sequence[int | float],
                     units: Mapping[int | float, set[str]] | None = None, *,
                     order: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """``schema`` with each top-level number field limited to ``numbers`` (and its default).

    Only fields whose type is ``number`` or ``integer`` and whose values the schema does
    not already fix; an integer field takes the whole numbers only, and bounds
    (``minimum``/``maximum``) still apply. A field left with no candidate stays free.
    With ``units`` (:func:`number_units`), a number whose unit names fields goes to those
    fields only, and a field some number's unit names takes only such numbers: "a
    81-minute run over 15 km" is ``minutes=81, distance_km=15``, which a small model
    swaps. ``order`` (:func:`mention_order`): pairs of fields ``(a, b)`` whose numbers
    are written ``a`` first, where ``numbers`` (in the order written) leave a choice.
    """
    props = schema.get("properties")
    numbers = [n for n in numbers if abs(n) <= MAX_EXACT]  # the grammar holds a value exactly, or not at all
    if not isinstance(props, Mapping) or not numbers:
        return dict(schema)
    out = dict(schema)
    out["properties"] = dict(props)
    number_fields = [k for k, f in props.items() if isinstance(f, Mapping) and f.get("type") in ("number", "integer")]
    claims = _unit_claims(number_fields, numbers, units or {})
    for key, field in props.items():
        kind = field.get("type") if isinstance(field, Mapping) else None
        if kind not in ("number", "integer") or "enum" in field or "const" in field:
            continue
        named = [n for n in numbers if key in claims.get(n, ())]
        fitting = named or [n for n in numbers if n not in claims]
        allowed = [n for n in fitting or numbers if kind == "number" or _whole(n)]
        allowed = [int(n) if kind == "integer" else n for n in allowed]
        if _is_number(field.get("default")):
            allowed.append(field["default"])
        allowed = [n for n in dict.fromkeys(allowed) if _within(n, field)]
        if allowed:
            out["properties"][key] = {**field, "enum": allowed}
    return _distinct_numbers(out, numbers, order)


MAX_ALTERNATIVES = 64  # assignments of numbers to fields written out as alternatives; more: each field alone


def _distinct_numbers(schema: dict[str, Any], numbers: Sequence[int | float],
                      order: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Required number fields take different numbers, when the request holds enough of them.

    A small model given "Out of 340 people, 35% said yes" wrote ``percent_of(35, 35)``;
    with as many distinct numbers as fields, one number for two fields is rarely meant.
    The assignments become ``anyOf`` alternatives of the whole object, one per assignment;
    of those, the ones that keep each ``order`` pair's numbers in the order ``numbers``
    has them, where any does.
    """
    required = set(schema.get("required", ()))
    fields = [k for k, f in schema["properties"].items() if k in required and isinstance(f, Mapping)
              and f.get("type") in ("number", "integer") and "enum" in f and "const" not in f]
    if len(fields) < 2 or len(numbers) < len(fields):
        return schema
    choices = [schema["properties"][k]["enum"] for k in fields]
    assignments = []
    for values in itertools.product(*choices):
        if len(set(values)) == len(values):  # 2 == 2.0, and an int too large for a float stays exact
            assignments.append(values)
            if len(assignments) > MAX_ALTERNATIVES:
                return schema
    if not assignments:
        return schema
    assignments = _in_order(assignments, fields, numbers, order) or assignments
    body = {k: v for k, v in schema.items() if k in ("type", "properties", "required", "additionalProperties")}
    alternatives = [{**body, "properties": {k: ({"type": f["type"], "const": values[fields.index(k)]} if k in fields else f)
                                            for k, f in schema["properties"].items()}} for values in assignments]
    rest = {k: v for k, v in schema.items() if k not in body}
    return {**rest, "anyOf": alternatives}


def _in_order(assignments: Sequence[tuple], fields: Sequence[str], numbers: Sequence[int | float],
              order: Sequence[tuple[str, str]]) -> list[tuple]:
    """The ``assignments`` (values of ``fields``) in which each pair of ``order`` is written first-field first."""
    place: dict[int | float, int] = {}
    for i, n in enumerate(numbers):
        place.setdefault(n, i)  # where each value is first written
    pairs = [(fields.index(a), fields.index(b)) for a, b in order if a in fields and b in fields]
    return [values for values in assignments
            if all(place.get(values[a], -1) < place.get(values[b], -1) for a, b in pairs)]


MIN_ORDER_EVIDENCE = 2  # examples that must show a pair's order, none showing the other, before it is kept


def mention_order(spec: ToolSpec) -> list[tuple[str, str]]:
    """Pairs of number fields ``(a, b)`` whose values ``spec``'s examples always write ``a`` first.

    A small model told "from a 6-serving recipe to 4 servings" wrote ``servings=4,
    new_servings=6``: both numbers name servings, so the units cannot tell them apart,
    and the words "to 4 servings" pull the model to the wrong field. How a tool's
    requests order such values is in its examples (the training data's requests and
    calls): a pair is kept when at least :data:`MIN_ORDER_EVIDENCE` examples write both
    values, once each and different, in the same order, and none in the other.
    """
    fields = [k for k, f in spec.parameters.get("properties", {}).items()
              if isinstance(f, Mapping) and f.get("type") in ("number", "integer")]
    seen: dict[tuple[str, str], list[bool]] = {}
    for example in spec.examples:
        written = numbers_in(example.prompt, once=False)
        place = {n: written.index(n) for n in written if written.count(n) == 1}
        values = {k: example.args.get(k) for k in fields}
        for a, b in itertools.combinations(fields, 2):
            va, vb = values[a], values[b]
            if _is_number(va) and _is_number(vb) and va != vb and va in place and vb in place:
                seen.setdefault((a, b), []).append(place[va] < place[vb])
    return _kept_orders(seen)


def _kept_orders(seen: Mapping[tuple[str, str], Sequence[bool]]) -> list[tuple[str, str]]:
    """The pairs of ``seen`` (per example: ``a``'s value first?) that at least :data:`MIN_ORDER_EVIDENCE` examples order alike."""
    return [(a, b) if firsts[0] else (b, a) for (a, b), firsts in seen.items()
            if len(firsts) >= MIN_ORDER_EVIDENCE and len(set(firsts)) == 1]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


MAX_SPAN_UNITS = 40  # a value copied from the request: at most this many words and marks
MAX_SOURCE_UNITS = 600  # a longer source leaves string fields free (the check after writing still holds)
_UNIT = re.compile(r"\w+|[^\w\s]")
_BREAKS = re.compile(r"[\"\\\n\r\t]")  # a copied value does not cross quotes, backslashes or line breaks


def grounded_strings(schema: Mapping[str, Any], text: str) -> dict[str, Any]:
    """``schema`` with each free top-level string field held to spans of ``text``, for a tool that acts.

    An acting tool's strings must appear in what the user wrote (:func:`untraceable`),
    and a small model checked only after writing copies its demonstrations instead
    ("remind me this evening" -> ``when: "night at 8"``) and loses the call. Held in
    the grammar (a ``pattern`` of the word spans of ``text``), it picks which words to
    copy. Fields with an ``enum``, ``const``, ``pattern`` or ``format`` are left alone.
    """
    props = schema.get("properties")
    fields = [k for k, f in (props or {}).items() if isinstance(f, Mapping) and f.get("type") == "string"
              and not {"enum", "const", "pattern", "format"} & set(f)]
    pattern = _span_pattern(text) if fields else None
    if pattern is None:
        return dict(schema)
    return {**schema, "properties": {k: ({**f, "pattern": pattern} if k in fields else f) for k, f in props.items()}}


def grounded_choices(schema: Mapping[str, Any], text: str) -> dict[str, Any]:
    """``schema`` with its enum fields held to the values ``text`` names, where it names enough of them.

    A value is named where it appears as a word or phrase of ``text`` (any case, a plural
    ``s`` or ``es`` allowed: "oats", "lattes", "inches"). Fields with the same values
    (``from_currency``, ``to_currency``) are held together, and only where ``text`` names
    at least as many of the values as there are such fields: fewer, and one of them must
    be a value the request calls otherwise ("Swiss francs" for ``CHF``). A small model left to choose
    writes the values its prompt leans to ("a 227 g block of butter" -> ``oats``).
    """
    props = schema.get("properties") or {}
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, values in choice_fields(schema).items():
        groups.setdefault(tuple(values), []).append(name)
    held = dict(props)
    for values, names in groups.items():
        named = named_values(values, text)
        if len(names) <= len(named) < len(values):
            held.update({name: _held_to(props[name], [v for v in values if v in named], schema) for name in names})
    return {**schema, "properties": held} if held != props else dict(schema)


def named_values(values: Sequence[str], text: str) -> list[str]:
    """The ``values`` that ``text`` names as a word or phrase (any case, a plural ``s`` or ``es``), in order of first mention."""
    places = {v: mentions(v, text) for v in values}
    return sorted((v for v in values if places[v]), key=lambda v: places[v][0])


def mentions(value: str, text: str) -> list[int]:
    """Where ``text`` names ``value`` as a word or phrase (any case, a plural ``s`` or ``es`` allowed)."""
    return [m.start() for m in re.finditer(_naming(value), text, re.IGNORECASE)]


def _naming(value: str) -> str:
    return rf"(?<![\w']){re.escape(value)}(?:s|es)?(?!\w)"  # "I'm" does not name "m"


def after_number(values: Sequence[str], text: str) -> list[str]:
    """The ``values`` that ``text`` names right after a number, at most one word between ("45.5 CHF", "20 in CET")."""
    numbers = [m.end() for m in _NUMBER.finditer(text)]
    return [v for v in values
            if any(re.compile(rf"\s*(?:\w+\s+)?{_naming(v)}", re.IGNORECASE).match(text, end) for end in numbers)]


def number_bound(spec: ToolSpec) -> list[str]:
    """The enum fields that take the value a request's number goes with ("45.5 CHF in EUR": ``from_currency``).

    A request naming two values of a pair of fields says which is which less by their
    order ("How many yards are in 1 mile?") than by which one its number goes with
    (:func:`after_number`). Of fields sharing their values, the one whose examples name its
    value after a number, none doing so for the others, at least
    :data:`MIN_ORDER_EVIDENCE` times or it being the first of them; with no example doing
    so, the first (a quantity is given in the unit it is converted from: ``from_unit``).
    """
    fields = choice_fields(spec.parameters)
    counts = {name: 0 for name in fields}
    for example in spec.examples:
        tied = after_number([v for v in example.args.values() if isinstance(v, str)], example.prompt)
        for name in fields:
            counts[name] += example.args.get(name) in tied
    bound = []
    for name, values in fields.items():
        group = [f for f in fields if fields[f] == values]
        if len(group) > 1 and not any(counts[f] for f in group if f != name) and (
                counts[name] >= MIN_ORDER_EVIDENCE or name == group[0]):
            bound.append(name)
    return bound


def choice_order(spec: ToolSpec) -> list[tuple[str, str]]:
    """Pairs of enum fields ``(a, b)`` with the same values whose examples always name ``a``'s value first.

    The choices' counterpart of :func:`mention_order`: "How much is 45.5 CHF in EUR?" names
    both currencies, and the examples show which of the two a request names first goes to
    ``from_currency``; a small model otherwise writes them in the order it leans to.
    """
    fields = choice_fields(spec.parameters)
    seen: dict[tuple[str, str], list[bool]] = {}
    for example in spec.examples:
        for a, b in itertools.combinations(fields, 2):
            va, vb = example.args.get(a), example.args.get(b)
            if fields[a] != fields[b] or va == vb or va not in fields[a] or vb not in fields[b]:
                continue
            pa, pb = mentions(va, example.prompt), mentions(vb, example.prompt)
            if len(pa) == 1 and len(pb) == 1:
                seen.setdefault((a, b), []).append(pa[0] < pb[0])
    return _kept_orders(seen)


def _held_to(field: Mapping[str, Any], values: Sequence[str], root: Mapping[str, Any]) -> dict[str, Any]:
    """``field`` with its enum (its own, a reference's, or one ``anyOf`` branch's) allowing only ``values``."""
    only = {"type": "string", "enum": list(values)}
    branch = enum_branch(field, root)
    if branch is field:
        return {**{k: v for k, v in field.items() if k != "$ref"}, **only}
    return {**field, "anyOf": [only if b is branch else b for b in field["anyOf"]]}


def _span_pattern(text: str) -> str | None:
    """A regex matching exactly the spans of ``text`` that start and end on a word or mark; ``None`` if too long."""
    alternatives, units = [], 0
    for segment in _BREAKS.split(text):
        spans = [(m.start(), m.end()) for m in _UNIT.finditer(segment)]
        units += len(spans)
        if units > MAX_SOURCE_UNITS:
            return None
        for i, (start, end) in enumerate(spans):
            head, tail = _regex_literal(segment[start:end]), ""
            for j in range(i + 1, min(len(spans), i + MAX_SPAN_UNITS)):
                head += "(?:" + _regex_literal(segment[spans[j - 1][1]:spans[j][1]])
                tail += ")?"
            alternatives.append(head + tail)
    return "^(?:" + "|".join(dict.fromkeys(alternatives)) + ")$" if alternatives else None


def _regex_literal(text: str) -> str:
    return "".join("\\" + c if c in "\\.+*?()|[]{}^$#&-~/" else c for c in text)


def _whole(n: int | float) -> bool:
    """Whether ``n`` is a whole number (an ``int`` of any size: a tool result may exceed a float's range)."""
    return isinstance(n, int) or n.is_integer()


def _within(value: int | float, field: Mapping[str, Any]) -> bool:
    low, high = field.get("minimum"), field.get("maximum")
    return (not isinstance(low, (int, float)) or value >= low) and (not isinstance(high, (int, float)) or value <= high)
