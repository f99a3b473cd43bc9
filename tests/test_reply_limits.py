"""How a reply is bounded and shaped: a deadline, a JSON schema, and the last chunk on a cut."""

from __future__ import annotations

import json
import types

import torch

from toolken_agent import decoding
from toolken_agent.conversation import Message, ToolCall
from toolken_agent.decoding import (CallFinished, CallRefused, CallStarted, Decoder, DecodeConfig, Finished,
                                    TextChunk)
from toolken_agent.sampling import sample
from toolken_agent.tool import Tool
from toolken_agent.toolkens import Toolkens
from toolken_agent.toolset import make_toolset


class Add(Tool):
    """Add two numbers and return their sum."""

    read_only = True

    def run(self, a: int, b: int) -> int:
        return a + b


VERDICT = {"title": "Verdict", "type": "object",
           "properties": {"ok": {"type": "boolean"}, "color": {"enum": ["red", "blue"]}}, "required": ["ok", "color"]}


def quiet_toolkens(lm) -> Toolkens:
    """Toolkens that never win on their logits (a forced tool_choice still makes the call)."""
    toolkens = Toolkens.from_priors(lm, make_toolset([Add]), prior="random")
    with torch.no_grad():
        toolkens.head.bias.fill_(-1e4)
    return toolkens


def ticking_clock(monkeypatch) -> None:
    """Each reading of the decoder's clock is one second later than the last: deadlines fall on known steps."""
    ticks = iter(range(1, 10_000))
    monkeypatch.setattr(decoding, "time", types.SimpleNamespace(monotonic=lambda: next(ticks)))


def run(lm, messages, **config):
    return list(Decoder(quiet_toolkens(lm)).stream(messages, DecodeConfig(**config)))


def text_of(events) -> str:
    return "".join(e.text for e in events if isinstance(e, TextChunk))


# -- deadline ------------------------------------------------------------------------------
def test_a_deadline_ends_the_reply_after_the_tokens_written_in_time_and_keeps_their_text(tiny_lm, monkeypatch):
    ticking_clock(monkeypatch)
    got = run(tiny_lm, [Message("user", "hi")], tool_choice="none", max_new_tokens=50, deadline=3.5)
    end = got[-1]
    assert isinstance(end, Finished) and end.reason == "timeout"
    assert end.completion_tokens == 3  # read at 1, 2, 3: three tokens; at 4 the time is over
    assert text_of(got) == end.messages[-1].content != ""


def test_a_call_whose_arguments_are_cut_by_the_deadline_is_never_made(tiny_lm, monkeypatch):
    ticking_clock(monkeypatch)
    got = run(tiny_lm, [Message("user", "What is 3 plus 4?")], tool_choice="add", max_new_tokens=50, deadline=2.5)
    assert [type(e) for e in got if isinstance(e, (CallStarted, CallRefused, CallFinished))] == [CallStarted, CallRefused]
    assert "time" in next(e for e in got if isinstance(e, CallRefused)).reason
    assert got[-1].reason == "timeout" and got[-1].messages[-1].tool_calls == ()


def test_without_a_deadline_the_same_reply_runs_to_its_length(tiny_lm):
    got = run(tiny_lm, [Message("user", "hi")], tool_choice="none", max_new_tokens=5)
    assert got[-1].reason == "length" and got[-1].completion_tokens == 5


# -- the last chunk ------------------------------------------------------------------------
def test_the_streamed_chunks_of_a_reply_cut_at_its_length_add_up_to_its_text(tiny_lm):
    for n in (1, 2, 3, 7):
        got = run(tiny_lm, [Message("user", "What is 12 times 7?")], tool_choice="none", max_new_tokens=n)
        assert got[-1].reason == "length"
        assert text_of(got) == got[-1].messages[-1].content, n


# -- a reply held to a schema --------------------------------------------------------------
def test_a_reply_held_to_a_schema_is_json_valid_for_it_and_ends_with_the_object(tiny_lm):
    got = run(tiny_lm, [Message("user", "hi")], reply_schema=VERDICT, max_new_tokens=64)
    reply = json.loads(text_of(got))
    assert set(reply) == {"ok", "color"} and isinstance(reply["ok"], bool) and reply["color"] in ("red", "blue")
    assert got[-1].reason == "stop" and not any(isinstance(e, CallStarted) for e in got)


def test_a_reply_held_to_a_schema_may_open_with_a_brace_right_after_a_tool_result(tiny_lm):
    history = [Message("user", "What is 3 plus 4?"), Message("assistant", tool_calls=(ToolCall("add", {"a": 3, "b": 4}, "c"),)),
               Message("tool", "7", tool_call_id="c", name="add")]
    got = run(tiny_lm, history, reply_schema=VERDICT, max_new_tokens=64)
    assert json.loads(text_of(got))["color"] in ("red", "blue")


# -- sampling ------------------------------------------------------------------------------
def test_top_p_samples_only_from_the_smallest_set_holding_that_probability():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2]))
    seen = lambda top_p: {sample(logits, temperature=1.0, top_p=top_p, generator=torch.Generator().manual_seed(s))
                          for s in range(300)}
    assert seen(0.6) == {0, 1}
    assert seen(0.4) == {0}
    assert seen(1.0) == {0, 1, 2}


def test_temperature_zero_is_the_argmax_whatever_top_p():
    logits = torch.tensor([0.1, 3.0, -1.0, 2.9])
    assert {sample(logits, temperature=0.0, top_p=p) for p in (0.1, 0.5, 1.0)} == {1}


def test_a_toolken_is_sampled_like_a_word():
    logits = torch.tensor([0.0, 0.0, float("-inf"), 5.0])  # the last entry is a toolken in the joint logits
    picks = [sample(logits, temperature=1.0, top_p=0.9, generator=torch.Generator().manual_seed(s)) for s in range(50)]
    assert set(picks) == {3}
