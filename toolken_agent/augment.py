"""Training policy: what is added to the user's conversations before training.

Whether to call is learned only at the positions the data shows. Public function-calling
sets (xLAM/APIGen, Glaive) hold a request and its call, and nothing after: no tool
result, no answer. Trained on them alone, toolkens have never seen the reply that
follows a result, and fire there again and again. Two additions cover the positions a
conversation reaches that such data leaves out:

* :func:`with_result_turns`: after every call that has no result turn, a result and a
  reply in words, so the reply start after a result is trained as "answer now", unless
  the data shows a follow-up call there.
* :func:`with_built_in_negatives`: when no request is answered in words, a few that
  are (greetings, a haiku, a capital city), so not every reply starts with a call.

And one addition for what such data varies too little: :func:`reworded_requests`
gives each training request a twin that says the same with a greeting or a thanks
around it and, where the request quotes the text a call works on, other text quoted,
so that whether and which tool to call is learned from what is asked, not from how
chatty the asking is or what the quoted text happens to say.
"""

from __future__ import annotations

import hashlib
import json
import random
import types
import typing
from typing import Any, Callable, Sequence

from .conversation import Conversation, Message, ToolCall
from .data import NEGATIVE_EXAMPLES, answers_without_tools
from .executor import run_tool
from .tool import ToolSpec
from .toolset import Toolset

# Words around a request that change nothing it asks: a twin of each training request
# gets one (:func:`reworded_requests`), calls and answers in words alike.
LEAD_INS = ("Hi!", "Hello there.", "Quick question:", "Sorry to bother you.", "I have a question.",
            "Hey, could you help me?", "Okay, next one:", "Good morning!", "One more thing:", "Hi, I need a hand.")
SIGN_OFFS = ("Thanks!", "Thank you.", "Thanks in advance.", "Cheers.", "Much appreciated.")
_QUOTES = (('"', '"'), ("'", "'"), ("\u201c", "\u201d"), ("\u2018", "\u2019"), ("\u00ab", "\u00bb"))

RESULT_TIMEOUT = 5.0  # seconds a read-only tool may take to give a training result

# Placeholders for results a tool was not run for, by its declared return type: the
# reply start after a result reads "a result came", whatever it says.
_PLACEHOLDERS: dict[Any, str] = {bool: "true", str: "Done.", dict: "{}", list: "[]"}


def example_conversations(toolset: Toolset, *, with_negatives: bool = True) -> list[Conversation]:
    """Conversations built from the examples declared on the tools, each with its result and a reply.

    The result turn is :func:`training_result`'s, as for calls in the user's data: a
    read-only tool is run, an acting one never (an example of ``send_email`` must not
    send mail at training time).
    """
    conversations = [
        Conversation((Message("user", example.prompt),
                      Message("assistant", tool_calls=(ToolCall(spec.name, dict(example.args), id=f"call_{n}"),))),
                     source=f"{spec.name} example {n + 1}")
        for spec in toolset for n, example in enumerate(spec.examples)
    ]
    conversations = with_result_turns(conversations, toolset)
    return with_built_in_negatives(conversations) if with_negatives else conversations


def placeholder_result(spec: ToolSpec, args: dict[str, Any] | None = None) -> str:
    """A stand-in result of ``spec``'s declared return type (``"Done."`` when unknown).

    Numbers vary from call to call (seeded by the call, so training is repeatable): with
    one constant number after every call, "answer now" was learned for that number only,
    and calls fired again after real results.
    """
    kind = _return_type(spec)
    if kind in (int, float):
        rng = random.Random(hashlib.sha256(json.dumps([spec.name, args], sort_keys=True, default=str).encode()).digest())
        if kind is int:
            return str(rng.randint(2, 999))
        return str(round(rng.uniform(1, 1000) / 10 ** rng.randint(0, 2), 2))
    return _PLACEHOLDERS.get(kind, "Done.")


def _return_type(spec: ToolSpec) -> Any:
    """The declared return type of ``spec``; of a union, its first member."""
    annotation = spec.returns
    members = [m for m in typing.get_args(annotation) if m is not type(None)] if _is_union(annotation) else [annotation]
    return typing.get_origin(members[0]) or members[0] if members else None


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def training_result(spec: ToolSpec, args: dict[str, Any]) -> str:
    """The result a call gets in synthesized training turns.

    A tool declared ``read_only`` is run (a real result, as the model will see it);
    any other tool may send mail or delete files, so it is never run here and gets
    :func:`placeholder_result`. A read-only tool that fails also gets the placeholder.
    """
    if spec.read_only is True and spec.func is not None:
        outcome = run_tool(spec, args, timeout=RESULT_TIMEOUT)
        if not outcome.is_error:
            return outcome.content
    return placeholder_result(spec, args)


def answer_text(results: Sequence[str]) -> str:
    """The reply in words after results: quotes them, as the answers users want do."""
    return "The result is " + ", ".join(results) + "." if len(results) == 1 else "The results are " + ", ".join(results) + "."


def with_result_turns(conversations: Sequence[Conversation], toolset: Toolset, *,
                      result: Callable[[ToolSpec, dict[str, Any]], str] = training_result) -> list[Conversation]:
    """Each conversation with a result turn after every call that has none, then a reply in words.

    The reply is added only where the data shows nothing after the calls (or a new user
    message): an assistant turn already there, a follow-up call included, is kept. A
    call made again (a reworded twin's, a repeated request's) reuses its first result
    instead of running the tool again.
    """
    results: dict[str, str] = {}

    def once(spec: ToolSpec, args: dict[str, Any]) -> str:
        key = json.dumps([spec.name, args], sort_keys=True, default=str)
        if key not in results:
            results[key] = result(spec, args)
        return results[key]

    return [_with_results(c, toolset, once) for c in conversations]


def _with_results(conversation: Conversation, toolset: Toolset,
                  result: Callable[[ToolSpec, dict[str, Any]], str]) -> Conversation:
    messages = list(conversation.messages)
    out: list[Message] = []
    changed = False
    for i, message in enumerate(messages):
        out.append(message)
        if message.role != "assistant" or not message.tool_calls:
            continue
        following = messages[i + 1] if i + 1 < len(messages) else None
        if following is not None and following.role == "tool":
            continue
        results = []
        for n, call in enumerate(message.tool_calls):
            text = result(toolset.get(call.name), dict(call.args)) if call.name in toolset.names else "Done."
            out.append(Message("tool", text, tool_call_id=call.id or f"call_{i}_{n}", name=call.name))
            results.append(text)
        if following is None or following.role == "user":
            out.append(Message("assistant", answer_text(results)))
        changed = True
    if not changed:
        return conversation
    return Conversation(tuple(_with_ids(out)), source=conversation.source, meta=conversation.meta)


def _with_ids(messages: list[Message]) -> list[Message]:
    """Calls without ids get the ids their synthesized results point to."""
    fixed = []
    for i, m in enumerate(messages):
        if m.role == "assistant" and any(c.id is None for c in m.tool_calls):
            m = Message(m.role, m.content, tuple(ToolCall(c.name, c.args, c.id or f"call_{i}_{n}")
                                                 for n, c in enumerate(m.tool_calls)), m.tool_call_id, m.name)
        fixed.append(m)
    return fixed


def with_built_in_negatives(conversations: Sequence[Conversation]) -> list[Conversation]:
    """``conversations`` plus :data:`~toolken_agent.data.NEGATIVE_EXAMPLES` when no request in them needed no tool.

    Why: where every training reply starts with a call, the toolkens learn that every
    reply starts with a call (docs/design-notes.md has the measurement). Data that
    already holds such requests is left as it is.
    """
    conversations = list(conversations)
    return conversations + negative_conversations() if needs_built_in_negatives(conversations) else conversations


def needs_built_in_negatives(conversations: Sequence[Conversation]) -> bool:
    """Whether :func:`with_built_in_negatives` would add to ``conversations``: some, and every one calls a tool."""
    return bool(conversations) and not any(answers_without_tools(c) for c in conversations)


def negative_conversations() -> list[Conversation]:
    """:data:`~toolken_agent.data.NEGATIVE_EXAMPLES` as conversations: a request, and a reply in words."""
    return [Conversation((Message("user", prompt), Message("assistant", reply)), source=f"negative {n + 1}")
            for n, (prompt, reply) in enumerate(NEGATIVE_EXAMPLES)]


def reworded_requests(conversations: Sequence[Conversation], *, seed: int = 0) -> list[Conversation]:
    """A twin of each conversation that starts with a request: the same request and its first move, reworded.

    The request gets a lead-in (:data:`LEAD_INS`) or a sign-off (:data:`SIGN_OFFS`),
    and where a call's string argument is quoted in it, another text stands in for
    it, in the request and the call alike: the texts of the built-in answers in words
    (:data:`~toolken_agent.data.NEGATIVE_EXAMPLES`) and the other quoted arguments,
    so a quoted sentence that reads like chat ("Thank you for your patience...") is
    seen as a call's text. A twin ends with the first assistant move; the result
    turns are added after (:func:`with_result_turns`). Seeded: training is repeatable.
    """
    rng = random.Random(seed)
    quoted = [q for c in conversations for q in _quoted_arguments(c)]
    fillers = [t for pair in NEGATIVE_EXAMPLES for t in pair] + quoted
    twins = []
    for n, conversation in enumerate(conversations):
        twin = _reworded(conversation, rng, fillers)
        if twin is not None:
            twins.append(Conversation(twin, source=f"{conversation.source or n} (reworded)", meta=conversation.meta))
    return twins


def _reworded(conversation: Conversation, rng: random.Random, fillers: Sequence[str]) -> tuple[Message, ...] | None:
    """The twin's messages (see :func:`reworded_requests`); ``None`` when no request is answered right after it."""
    first = _first_exchange(conversation)
    if first is None:
        return None
    messages = conversation.messages
    request, move = messages[first], messages[first + 1]
    text = request.content
    calls = list(move.tool_calls)
    for value in _quoted_in(text, calls):
        opener, closer = next((o, c) for o, c in _QUOTES if f"{o}{value}{c}" in text)
        options = [f for f in fillers if f != value and opener not in f and closer not in f and "\n" not in f]
        if not options:
            continue
        other = rng.choice(options)
        text = text.replace(f"{opener}{value}{closer}", f"{opener}{other}{closer}")
        calls = [ToolCall(c.name, {k: other if v == value else v for k, v in c.args.items()}, c.id) for c in calls]
    text = f"{rng.choice(LEAD_INS)} {text}" if rng.random() < 0.5 else f"{text} {rng.choice(SIGN_OFFS)}"
    reworded = (Message("user", text), Message("assistant", move.content, tuple(calls)))
    return (*messages[:first], *reworded)


def _quoted_in(text: str, calls: Sequence[ToolCall]) -> list[str]:
    """The calls' string arguments that ``text`` holds inside quotes, each once."""
    values = {v for c in calls for v in c.args.values() if isinstance(v, str) and v.strip()}
    return sorted(v for v in values if any(f"{o}{v}{c}" in text for o, c in _QUOTES))


def _quoted_arguments(conversation: Conversation) -> list[str]:
    """The string arguments the first request quotes for the move that answers it."""
    first = _first_exchange(conversation)
    if first is None:
        return []
    return _quoted_in(conversation.messages[first].content, conversation.messages[first + 1].tool_calls)


def _first_exchange(conversation: Conversation) -> int | None:
    """The index of the first user message, when an assistant move answers it right after; else ``None``."""
    messages = conversation.messages
    first = next((i for i, m in enumerate(messages) if m.role == "user"), None)
    if first is None or first + 1 >= len(messages) or messages[first + 1].role != "assistant":
        return None
    return first
