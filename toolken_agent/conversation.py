"""Conversations: the message model shared by training data, decoding and chat.

Messages follow the OpenAI chat format, the one function-calling data sets and APIs
already use: roles ``system``, ``user``, ``assistant`` (optionally with
``tool_calls``) and ``tool`` (a result, tied to its call by ``tool_call_id``).
Parsing is strict: an unexpected shape is an error naming what is wrong, never a guess.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class ToolCall:
    name: str
    args: Mapping[str, Any]
    id: str | None = None


@dataclass(frozen=True)
class Message:
    role: str
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None  # for tool results: which tool produced it


@dataclass(frozen=True)
class Conversation:
    """A list of messages, plus where it came from (``file:line``) for error messages."""

    messages: tuple[Message, ...]
    source: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tool_names(self) -> list[str]:
        return [c.name for m in self.messages for c in m.tool_calls]


def content_text(content: Any) -> str:
    """Message content as text: a string, ``None``, or a list of OpenAI text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            else:
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise ValueError(f"unsupported content part of type {kind!r} (only text)")
        return "".join(parts)
    raise ValueError(f"content must be a string or a list of text parts, got {type(content).__name__}")


def json_problem(exc: Exception) -> str:
    """What ``json.loads`` objected to, in a few words on one line.

    Besides ``JSONDecodeError`` it raises ``UnicodeDecodeError`` for bytes that are not
    UTF-8, a plain ``ValueError`` for integers over Python's 4300-digit limit, and
    ``RecursionError`` for nesting deeper than the interpreter's stack allows.
    """
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text: {exc.reason} at byte {exc.start}"
    return str(exc).split(";")[0]


def parse_tool_call(raw: Any) -> ToolCall:
    if not isinstance(raw, Mapping):
        raise ValueError("a tool call must be an object")
    function = raw.get("function", raw)
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise ValueError("a tool call needs function.name")
    args = function.get("arguments", {})
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"arguments of {function['name']!r} are not valid JSON ({json_problem(exc)})") from None
    if not isinstance(args, Mapping):
        raise ValueError(f"arguments of {function['name']!r} must be a JSON object")
    call_id = raw.get("id")
    return ToolCall(function["name"], dict(args), str(call_id) if call_id is not None else None)


def parse_message(raw: Any) -> Message:
    """One OpenAI-format message dict as a :class:`Message`."""
    if not isinstance(raw, Mapping):
        raise ValueError("a message must be an object")
    role = raw.get("role")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (expected one of {', '.join(ROLES)})")
    content = content_text(raw.get("content"))
    calls = raw.get("tool_calls") or []
    if calls and role != "assistant":
        raise ValueError(f"only assistant messages have tool_calls, not {role}")
    if not isinstance(calls, list):
        raise ValueError("tool_calls must be a list")
    return Message(
        role=role,
        content=content,
        tool_calls=tuple(parse_tool_call(c) for c in calls),
        tool_call_id=raw.get("tool_call_id"),
        name=raw.get("name"),
    )


def parse_messages(raw: Any) -> tuple[Message, ...]:
    if not isinstance(raw, list) or not raw:
        raise ValueError("'messages' must be a non-empty list")
    return tuple(parse_message(m) for m in raw)
