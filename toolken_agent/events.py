"""What a decoding run is configured with and what it reports: plain data, no model.

:class:`DecodeConfig` and the events :meth:`toolken_agent.decoding.Decoder.stream`
yields live here, apart from the decoder, so that the terminal chat, the CLI's
``--help`` and other consumers can use them without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .conversation import Message, ToolCall
from .defaults import TOOL_TIMEOUT

if TYPE_CHECKING:  # tool.py loads pydantic and jsonschema: not needed to describe a run
    from .tool import ToolSpec


@dataclass(frozen=True)
class DecodeConfig:
    max_new_tokens: int = 256  # text tokens; call arguments have their own budget
    temperature: float = 0.0  # 0 is greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    tool_choice: str = "auto"
    max_calls: int = 4  # multi-hop limit per request
    max_argument_tokens: int = 256
    tool_bias: float = 0.0  # added to every toolken logit (ToolkenGPT's inference-time bias)
    calls_anywhere: bool = False  # True: a toolken may fire mid-text (ToolkenGPT's inline calls)
    # After a tool result the reply may not open with "{": models trained on native
    # function calling echo the call there as JSON text instead of answering, and a
    # toolken can fire inside the echo where it names a tool (docs/design-notes.md).
    # False: such a reply may open with JSON.
    json_echo_guard: bool = True
    tool_timeout: float = TOOL_TIMEOUT
    seed: int | None = None
    calls_per_turn: int | None = None  # calls in one assistant turn; None: up to max_calls
    # The whether-to-call probability a call needs (Toolkens.gate); None: the toolkens' own.
    call_threshold: float | None = None
    no_repeat_calls: bool = True  # an identical call is made once per request
    # A reply may not be empty: the end token and whitespace cannot come before visible
    # text (after a tool result a small model often ends at once). False: plain generation.
    nonempty_reply: bool = True
    # Added to the logits in the reply after tool results, until the reply quotes them
    # (processors.ResultCopy): on the tokens that open a result, and on the token that
    # continues a result the reply is partway into. 0 turns the copy off.
    result_copy_bias: float = 6.0
    result_continue_bias: float = 8.0
    trace_arguments: bool = True  # argument values must come from the conversation (provenance)
    # An enum field's value is the one the request raised most over a request with no
    # content (toolken_agent.choices): None for tools without examples of their own and a
    # field left once the named values are taken (choices.values_left), True for every
    # tool, False for none (the LM writes the value token by token).
    calibrated_choices: bool | None = None
    # time.monotonic() at which the reply ends, checked once per token: the text so far is
    # kept, a call whose arguments are still being written is dropped (CallRefused), and
    # Finished.reason is "timeout". None: no time limit.
    deadline: float | None = None
    # A JSON schema the reply text is held to (structured output): the text is one JSON
    # value valid for it, constrained token by token like a call's arguments. None: free text.
    reply_schema: Mapping[str, Any] | None = None


# -- events ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TextChunk:
    text: str


@dataclass(frozen=True)
class CallStarted:
    """A toolken fired: the call ``index`` (counted over the request) to ``name``, before its arguments."""

    index: int
    id: str
    name: str


@dataclass(frozen=True)
class ArgumentsChunk:
    """More of call ``index``'s argument text as the model writes it; the texts add up to its ``raw_arguments``."""

    index: int
    text: str


@dataclass(frozen=True)
class CallFinished:
    index: int
    call: ToolCall
    error: str | None = None  # set when the arguments did not validate
    raw_arguments: str = ""  # the JSON text the model wrote


@dataclass(frozen=True)
class CallRefused:
    """A toolken fired but its call was not made (see :mod:`toolken_agent.provenance`); decoding goes on."""

    index: int
    call: ToolCall
    reason: str
    raw_arguments: str = ""  # the JSON text the model wrote (streamed before the call was refused)


@dataclass(frozen=True)
class ToolResult:
    call: ToolCall
    content: str
    is_error: bool


@dataclass(frozen=True)
class Finished:
    reason: str  # "stop", "length", "tool_calls", "timeout" (DecodeConfig.deadline)
    prompt_tokens: int
    completion_tokens: int
    messages: tuple[Message, ...] = ()  # the conversation after this request, calls and results included


Event = TextChunk | CallStarted | ArgumentsChunk | CallFinished | CallRefused | ToolResult | Finished
Confirm = Callable[[ToolCall, "ToolSpec"], bool]  # asked before an acting tool runs


