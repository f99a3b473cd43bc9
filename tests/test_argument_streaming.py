"""Tool-call arguments reach LangChain as they are written: ``tool_call_chunks`` that add up to the call.

The decoder yields the argument text in pieces (:class:`~toolken_agent.events.ArgumentsChunk`);
``ChatToolken._stream`` sends the name and id first, then each piece, and LangChain's
merge of the chunks gives the call ``invoke`` gives. A call that ends unusable, whose
text was streamed already, must still end as an invalid call, never a runnable one.
"""

from __future__ import annotations

import json
from typing import Literal

import pytest
import torch
from langchain_core.messages import AIMessageChunk

from toolken_agent.conversation import Message
from toolken_agent.decoding import Decoder
from toolken_agent.events import ArgumentsChunk, CallFinished, CallRefused, CallStarted, DecodeConfig
from toolken_agent.integrations.langchain import ChatToolken, call_chunk, unparsable_ending
from toolken_agent.tool import Tool
from toolken_agent.toolkens import Toolkens
from toolken_agent.toolset import make_toolset


class Remember(Tool):
    """Remember a word for later."""  # acting: its argument prompt never shows results, so a repeat is written alike

    def run(self, word: Literal["cat", "dog", "bird"], loud: bool) -> str:  # fixed values: the random model completes them
        return word


def merged(events) -> AIMessageChunk:
    """The reply LangChain builds from the chunks the call events become."""
    total = AIMessageChunk(content="")
    for event in events:
        piece = call_chunk(event)
        if piece is not None:
            total += AIMessageChunk(content="", tool_call_chunks=[piece])
    return total


def call_events(lm, history: list[Message] | None = None, **config) -> list:
    """The call events of a reply whose first decision is a call to Remember."""
    toolkens = Toolkens.from_priors(lm, make_toolset([Remember]), prior="random")
    with torch.no_grad():
        toolkens.head.bias.fill_(1e4)
    messages = history or [Message("user", "remember cat")]
    got = Decoder(toolkens).stream(messages, DecodeConfig(max_new_tokens=2, max_calls=2, calls_per_turn=1, **config))
    return [e for e in got if isinstance(e, (CallStarted, ArgumentsChunk, CallFinished, CallRefused))]


def test_the_argument_pieces_add_up_to_the_text_the_call_was_parsed_from(tiny_lm):
    events = call_events(tiny_lm, trace_arguments=False, max_argument_tokens=40)
    pieces = [e.text for e in events if isinstance(e, ArgumentsChunk)]
    (finished,) = [e for e in events if isinstance(e, CallFinished)]
    assert len(pieces) >= 3 and "".join(pieces) == finished.raw_arguments
    assert isinstance(events[0], CallStarted) and events[-1] is finished


@pytest.mark.parametrize("prefix_of", ['{"word":"a \\\\"b\\\\" c","limit":[1,{"x":2}]}', '{"word":"\\\\u00e9t\\u00e9"}'])
def test_no_cut_of_json_becomes_an_object_once_its_ending_is_added(prefix_of):
    from langchain_core.utils.json import parse_partial_json

    for cut in range(len(prefix_of) + 1):
        text = prefix_of[:cut]
        try:
            parsed = parse_partial_json(text + unparsable_ending(text))
        except json.JSONDecodeError:
            continue
        assert not isinstance(parsed, dict), text


def test_a_call_refused_after_its_arguments_streamed_ends_as_an_invalid_call(tiny_lm):
    (first,) = [e.call for e in call_events(tiny_lm, trace_arguments=False) if isinstance(e, CallFinished)]
    history = [Message("user", "remember cat"), Message("assistant", "", (first,)),
               Message("tool", "cat", tool_call_id=first.id, name="remember")]
    events = call_events(tiny_lm, history, trace_arguments=False)  # greedy: the same call again, refused as a repeat
    (refused,) = [e for e in events if isinstance(e, CallRefused)]
    assert refused.call.args == first.args and "already made" in refused.reason
    reply = merged(events)
    assert reply.tool_calls == []
    (invalid,) = reply.invalid_tool_calls
    assert invalid["name"] == "remember" and invalid["id"] == refused.call.id
    assert invalid["args"].startswith(refused.raw_arguments) and json.loads(refused.raw_arguments) == refused.call.args


def test_arguments_cut_off_by_the_budget_end_as_an_invalid_call(tiny_lm):
    events = call_events(tiny_lm, trace_arguments=False, max_argument_tokens=3)
    (finished,) = [e for e in events if isinstance(e, CallFinished)]
    assert finished.error and not merged(events).tool_calls
    (invalid,) = merged(events).invalid_tool_calls
    assert invalid["id"] == finished.call.id and invalid["args"].startswith(finished.raw_arguments)


def test_chat_toolken_streams_the_call_in_pieces_that_add_up_to_what_invoke_returns(tiny_model_dir):
    llm = ChatToolken(model=str(tiny_model_dir), dtype="float32", max_tokens=2)
    bound = llm.bind_tools([Remember], tool_choice="remember")  # forced: the call is made, its arguments untraced
    chunks = list(bound.stream("remember cat"))
    with_calls = [c for c in chunks if c.tool_call_chunks]
    assert len(with_calls) >= 3  # the name and id, then argument text, before the reply ends
    assert with_calls[0].tool_call_chunks[0]["name"] == "remember" and with_calls[0].tool_call_chunks[0]["id"]
    assert all(c.tool_call_chunks[0]["name"] is None for c in with_calls[1:])
    streamed = chunks[0]
    for chunk in chunks[1:]:
        streamed += chunk
    invoked = bound.invoke("remember cat")

    def calls(message) -> list:
        return [({k: v for k, v in c.items() if k != "id"}) for c in message.tool_calls + message.invalid_tool_calls]

    assert calls(streamed) == calls(invoked) and [c["name"] for c in invoked.tool_calls] == ["remember"]
    assert streamed.response_metadata["finish_reason"] == invoked.response_metadata["finish_reason"] == "tool_calls"
