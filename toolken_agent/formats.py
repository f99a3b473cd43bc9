"""Public function-calling data shapes, read as OpenAI chat messages.

Users arrive with data in the shape of the set they downloaded. Three shapes are read,
one JSONL line at a time, so a file may even mix them:

* OpenAI chat format: ``{"messages": [...]}`` (kept as it is);
* xLAM / APIGen (Salesforce/xlam-function-calling-60k): ``{"query": str, "answers":
  [{"name", "arguments"}, ...]}``, ``answers`` possibly a JSON string; an empty list is a
  request answered without a tool only when the line also gives the reply (``"answer"``);
* ShareGPT with tool roles (LLaMA-Factory's format, Glaive and others converted to it):
  ``{"conversations": [{"from": "human" | "gpt" | "function_call" | "observation" |
  "system", "value": str}], "system": str?}``; a ``function_call`` value is the JSON of
  ``{"name", "arguments"}`` or a list of them.

Model-written text is never evaluated: values are parsed with ``json.loads`` only.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

EXPECTED = "expected an object with 'messages' (OpenAI), 'query' + 'answers' (xLAM) or 'conversations' (ShareGPT)"
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "observation": "tool", "tool": "tool", "function_call": "assistant"}


def as_openai_messages(record: Mapping[str, Any]) -> list[Any]:
    """The OpenAI-format message list of one record in any of the shapes above.

    Raises ValueError naming what is missing or malformed; the caller adds file and line.
    """
    if "messages" in record:
        return record["messages"]
    if "query" in record and "answers" in record:
        return _xlam(record)
    if "conversations" in record:
        return _sharegpt(record)
    raise ValueError(EXPECTED)


def _json_field(value: Any, what: str) -> Any:
    """``value`` itself, or the JSON it holds when it is a string (xLAM stores lists as text)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        raise ValueError(f"{what} is a string but not valid JSON") from None


def _calls(raw: Any, what: str) -> list[dict[str, Any]]:
    """OpenAI ``tool_calls`` entries from ``{"name", "arguments"}`` objects (one or a list)."""
    raw = _json_field(raw, what)
    items = raw if isinstance(raw, list) else [raw]
    calls = []
    for n, item in enumerate(items, 1):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise ValueError(f"{what}: each call needs a 'name'")
        arguments = _json_field(item.get("arguments", {}), f"arguments of {item['name']!r}")
        calls.append({"id": f"call_{n}", "type": "function", "function": {"name": item["name"], "arguments": arguments}})
    return calls


def _xlam(record: Mapping[str, Any]) -> list[Any]:
    query = record["query"]
    if not isinstance(query, str) or not query.strip():
        raise ValueError("'query' must be a non-empty string")
    answers = _json_field(record["answers"], "'answers'")
    if not isinstance(answers, list):
        raise ValueError("'answers' must be a list of calls")
    user = {"role": "user", "content": query}
    if answers:
        return [user, {"role": "assistant", "content": None, "tool_calls": _calls(answers, "'answers'")}]
    if isinstance(record.get("answer"), str):
        return [user, {"role": "assistant", "content": record["answer"]}]
    raise ValueError("'answers' is empty and no 'answer' in words is given")


def _sharegpt(record: Mapping[str, Any]) -> list[Any]:
    turns = record["conversations"]
    if not isinstance(turns, list) or not turns:
        raise ValueError("'conversations' must be a non-empty list")
    messages: list[dict[str, Any]] = []
    if isinstance(record.get("system"), str) and record["system"].strip():
        messages.append({"role": "system", "content": record["system"]})
    pending: list[str] = []  # ids of calls still waiting for their observation
    for turn in turns:
        if not isinstance(turn, Mapping) or turn.get("from") not in SHAREGPT_ROLES or not isinstance(turn.get("value"), str):
            raise ValueError(f"each turn needs 'from' (one of {', '.join(SHAREGPT_ROLES)}) and a string 'value'")
        kind, value = turn["from"], turn["value"]
        if kind == "function_call":
            calls = _calls(value, "a function_call turn")
            offset = sum(len(m.get("tool_calls") or ()) for m in messages)
            for n, call in enumerate(calls, offset + 1):
                call["id"] = f"call_{n}"
            messages.append({"role": "assistant", "content": None, "tool_calls": calls})
            pending = [c["id"] for c in calls]
        elif kind in ("observation", "tool"):
            messages.append({"role": "tool", "content": value, "tool_call_id": pending.pop(0) if pending else None})
        else:
            messages.append({"role": SHAREGPT_ROLES[kind], "content": value})
    return messages
