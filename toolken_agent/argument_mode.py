"""Argument mode: the prompt in which the LM writes a called tool's arguments.

ToolkenGPT does not let the model write arguments in the middle of its running text:
once a toolken fires it switches to a short prompt for that tool, with demonstrations of
the tool in use, and the model fills in the arguments there. A small model needs this:
asked inline it fills argument slots with patterns of its own instead of the request's
values, and examples of the tool in use teach it to copy them (docs/design-notes.md).

The prompt is a short chat: a system line on the task; demonstrations as user/assistant
pairs (``Tool: name(args)`` and a request, answered with the JSON arguments), taken from
the tool's own examples, topped up with generic ones; then the tool with its description
and the request: the last user message, plus, for a tool that only reads, the results
of tools called since, so a second hop can use the first one's result. An acting tool
never sees results: text in a result is data, not instructions for what to send or
delete (:mod:`toolken_agent.provenance`). The JSON itself is constrained by the schema
(:mod:`toolken_agent.arguments`).
"""

from __future__ import annotations

from typing import Sequence

from .chat_format import arguments_text
from .conversation import Message
from .tool import ToolSpec

MAX_DEMOS = 4
MIN_OWN_DEMOS = 2  # a tool with fewer examples of its own is shown generic demonstrations too

# Demonstrations of *other* tools, used when a tool brings fewer than two examples of its
# own. The grammar forces the right keys; what these teach is the pattern of copying
# values from the request, which a small model shown no demonstration does not follow.
GENERIC_DEMOS = [
    ("get_time(timezone: string)", "What time is it in Tokyo right now?", {"timezone": "Tokyo"}),
    ("square(x: number)", "Please square 17 for me.", {"x": 17}),
    ("send_email(to: string, subject: string)", "Email bob@example.com with the subject Lunch.",
     {"to": "bob@example.com", "subject": "Lunch"}),
]


def signature(spec: ToolSpec) -> str:
    """``name(arg: type, ...)``: the tool as one line."""
    props = spec.parameters.get("properties", {})
    args = ", ".join(f"{k}: {v.get('type', 'value')}" for k, v in props.items())
    return f"{spec.name}({args})"


def argument_messages(spec: ToolSpec, conversation: Sequence[Message], *, max_demos: int = MAX_DEMOS) -> list[Message]:
    """The chat in which the arguments of a call to ``spec`` are written."""
    system = ("You fill in the arguments of a tool call from a request. "
              "Answer with the JSON arguments only, using the values in the request.")
    messages = [Message("system", system)]
    demos = [(signature(spec), e.prompt, dict(e.args)) for e in spec.examples[:max_demos]]
    if len(demos) < MIN_OWN_DEMOS:
        demos = GENERIC_DEMOS[: 3 - len(demos)] + demos
    for tool, prompt, args in demos:
        messages.append(Message("user", f"Tool: {tool}\nRequest: {prompt}"))
        messages.append(Message("assistant", arguments_text(args)))
    description = " ".join(spec.description.split())
    request = request_text(conversation, results=spec.read_only is True)
    messages.append(Message("user", f"Tool: {signature(spec)} - {description}\nRequest: {request}"))
    return messages


def shows_own_examples(spec: ToolSpec) -> bool:
    """Whether the argument prompt demonstrates ``spec`` with its own examples (else generic ones lead)."""
    return len(spec.examples) >= MIN_OWN_DEMOS


def request_text(conversation: Sequence[Message], *, results: bool = True) -> str:
    """The last user message and, with ``results``, the tool results that came after it."""
    last_user = max((i for i, m in enumerate(conversation) if m.role == "user"), default=-1)
    parts = [conversation[last_user].content] if last_user >= 0 else []
    for message in conversation[last_user + 1 :]:
        if message.role == "tool" and results:
            parts.append(f"(result of {message.name or 'a tool'}: {message.content})")
    return "\n".join(parts) if parts else ""
