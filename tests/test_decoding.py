"""The decoding loop: mode switch, tool_choice, tool execution, streaming."""

from __future__ import annotations

import pytest
import torch

from toolken_agent.conversation import Message, ToolCall
from toolken_agent.decoding import CallFinished, CallRefused, Decoder, DecodeConfig, Finished, TextChunk, ToolResult
from toolken_agent.processors import ToolChoice
from toolken_agent.tool import Tool
from toolken_agent.toolkens import Toolkens
from toolken_agent.toolset import make_toolset


class Ping(Tool):
    """Check that the service answers."""

    def run(self) -> str:
        return "pong"


class Explode(Tool):
    """A tool that always fails."""

    def run(self) -> str:
        raise RuntimeError("boom")


class Echo(Tool):
    """Repeat a piece of text back."""

    read_only = True  # its text need not come from the request (toolken_agent.provenance)

    def run(self, text: str) -> str:
        return text


def toolkens_for(lm, tools, fire=None):
    toolkens = Toolkens.from_priors(lm, make_toolset(tools), prior="random")
    with torch.no_grad():
        toolkens.head.bias.fill_(-1e4)
        if fire is not None:
            toolkens.head.bias[fire] = 1e4
    return toolkens


def events(toolkens, text="hi", run_tools=True, **config):
    return list(Decoder(toolkens).stream([Message("user", text)], DecodeConfig(**config), run_tools=run_tools))


def test_with_toolkens_masked_decoding_equals_plain_greedy_generation(tiny_lm):
    toolkens = toolkens_for(tiny_lm, [Ping], fire=0)
    got = events(toolkens, "What is 3 plus 4?", tool_choice="none", max_new_tokens=12, nonempty_reply=False)
    text = "".join(e.text for e in got if isinstance(e, TextChunk))
    prompt = toolkens.chat_format.render([Message("user", "What is 3 plus 4?")], add_generation_prompt=True).input_ids
    with torch.no_grad():
        out = tiny_lm.model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                                     eos_token_id=sorted(Decoder(toolkens).end_ids), pad_token_id=0)
    expected = tiny_lm.tokenizer.decode(out[0, len(prompt):], skip_special_tokens=True)
    assert text == expected
    assert not any(isinstance(e, CallFinished) for e in got)


def test_a_winning_toolken_calls_the_tool_and_splices_its_result(tiny_lm):
    got = events(toolkens_for(tiny_lm, [Ping], fire=0), max_calls=1, max_new_tokens=3)
    (result,) = [e for e in got if isinstance(e, ToolResult)]
    assert result.call.name == "ping" and result.content == "pong" and not result.is_error
    finished = got[-1]
    assert isinstance(finished, Finished)
    roles = [m.role for m in finished.messages]
    assert roles[:3] == ["user", "assistant", "tool"] and finished.messages[2].content == "pong"


def test_multi_hop_stops_at_max_calls(tiny_lm):
    got = events(toolkens_for(tiny_lm, [Ping, Echo], fire=0), max_calls=3, max_new_tokens=2, no_repeat_calls=False)
    assert len([e for e in got if isinstance(e, ToolResult)]) == 3


def test_an_identical_call_is_made_once_per_request_and_the_reply_ends_in_words(tiny_lm):
    got = events(toolkens_for(tiny_lm, [Ping], fire=0), max_calls=4, max_new_tokens=3)
    assert len([e for e in got if isinstance(e, ToolResult)]) == 1
    assert [e.reason for e in got if isinstance(e, CallRefused)] == ["the same call was already made for this request"]
    finished = got[-1]
    assert finished.reason in ("stop", "length") and finished.messages[-1].content


def test_calls_already_in_the_history_count_toward_max_calls_and_repeats(tiny_lm):
    toolkens = toolkens_for(tiny_lm, [Ping], fire=0)
    history = [Message("user", "hi"), Message("assistant", tool_calls=(ToolCall("ping", {}, "c1"),)),
               Message("tool", "pong", tool_call_id="c1", name="ping")]
    got = list(Decoder(toolkens).stream(history, DecodeConfig(max_new_tokens=3), run_tools=False))
    assert not any(isinstance(e, CallFinished) for e in got)
    got = list(Decoder(toolkens).stream(history, DecodeConfig(max_new_tokens=3, max_calls=1, no_repeat_calls=False)))
    assert not any(isinstance(e, CallFinished) for e in got)
    assert got[-1].messages[-1].content


def test_a_reply_is_never_empty_even_when_the_end_token_wins_at_once():
    from conftest import make_tiny_lm

    lm = make_tiny_lm(seed=2)
    decoder = Decoder(toolkens_for(lm, [Ping]))
    end = sorted(decoder.end_ids)[0]
    with torch.no_grad():
        lm.lm_head.weight[end] += 50.0  # the end token wins everywhere
    got = list(decoder.stream([Message("user", "hi")], DecodeConfig(max_new_tokens=4)))
    text = "".join(e.text for e in got if isinstance(e, TextChunk))
    assert text.strip() and got[-1].reason == "length"


def test_an_acting_tool_runs_only_when_confirm_says_yes(tiny_lm):
    ran = []

    class Send(Tool):
        """Send a message to the team."""

        def run(self) -> str:
            ran.append(1)
            return "sent"

    asked = []
    toolkens = toolkens_for(tiny_lm, [Send], fire=0)
    got = list(Decoder(toolkens).stream([Message("user", "hi")], DecodeConfig(max_calls=1, max_new_tokens=2),
                                        run_tools=True, confirm=lambda call, spec: asked.append(call.name) or False))
    (result,) = [e for e in got if isinstance(e, ToolResult)]
    assert asked == ["send"] and ran == [] and result.is_error and "declined" in result.content


def test_a_read_only_tool_runs_without_asking(tiny_lm):
    class Look(Tool):
        """Look at the sky."""

        read_only = True

        def run(self) -> str:
            return "blue"

    got = list(Decoder(toolkens_for(tiny_lm, [Look], fire=0)).stream(
        [Message("user", "hi")], DecodeConfig(max_calls=1, max_new_tokens=2), run_tools=True,
        confirm=lambda call, spec: pytest.fail("asked about a read-only tool")))
    assert [e.content for e in got if isinstance(e, ToolResult)] == ["blue"]


def test_a_raising_tool_becomes_an_error_result_and_decoding_goes_on(tiny_lm):
    got = events(toolkens_for(tiny_lm, [Explode], fire=0), max_calls=1, max_new_tokens=3)
    (result,) = [e for e in got if isinstance(e, ToolResult)]
    assert result.is_error and "boom" in result.content
    assert isinstance(got[-1], Finished)


def test_incomplete_arguments_are_an_error_result_and_the_tool_never_runs(tiny_lm):
    ran = []

    class Record(Tool):
        """Record a text."""

        def run(self, text: str) -> str:
            ran.append(text)
            return "ok"

    got = events(toolkens_for(tiny_lm, [Record], fire=0), max_calls=1, max_argument_tokens=2, max_new_tokens=2)
    (finished_call,) = [e for e in got if isinstance(e, CallFinished)]
    assert finished_call.error
    (result,) = [e for e in got if isinstance(e, ToolResult)]
    assert result.is_error and ran == []


@pytest.mark.parametrize("choice", ["required", "any", "echo"])
def test_forced_tool_choice_calls_even_when_words_win(tiny_lm, choice):
    toolkens = toolkens_for(tiny_lm, [Ping, Echo])  # toolkens at -1e4: words always win
    got = events(toolkens, tool_choice=choice, max_calls=1, max_new_tokens=2, run_tools=False)
    calls = [e for e in got if isinstance(e, CallFinished)]
    assert len(calls) == 1
    if choice == "echo":
        assert calls[0].call.name == "echo"
    assert got[-1].reason == "tool_calls"


def test_stop_strings_end_the_text_and_never_stream_past_it(tiny_lm):
    toolkens = toolkens_for(tiny_lm, [Ping])
    free = "".join(e.text for e in events(toolkens, tool_choice="none", max_new_tokens=20) if isinstance(e, TextChunk))
    assert len(free) > 4
    stop = free[2:4]
    got = events(toolkens, tool_choice="none", max_new_tokens=20, stop=(stop,))
    streamed = "".join(e.text for e in got if isinstance(e, TextChunk))
    assert stop not in streamed and free.startswith(streamed)
    assert got[-1].reason == "stop" and got[-1].messages[-1].content == streamed


NO_IDS = torch.zeros(1, 0, dtype=torch.long)  # input_ids (1, T): no processor here reads them


def test_every_processor_is_a_transformers_logits_processor_over_batch_by_vocab_scores(tiny_lm):
    """One protocol: ``processor(input_ids (1, T), scores (1, V)) -> (1, V)``, chainable in a LogitsProcessorList."""
    from transformers import LogitsProcessor, LogitsProcessorList

    from toolken_agent import processors
    from toolken_agent.arguments import ArgumentConstraint, ArgumentGrammar

    defined = [c for c in vars(processors).values() if isinstance(c, type) and c.__module__ == processors.__name__]
    assert {c.__name__ for c in defined} == {"ToolChoice", "ResultCopy", "ReplyStartGuard"}
    vocab = tiny_lm.vocab_size
    instances = [
        processors.ToolChoice("auto", vocab, ["a", "b"], tool_bias=1.0),
        processors.ResultCopy(["42"], [5, 6], bias=2.0),
        processors.ReplyStartGuard(torch.tensor([0, 1])),
        ArgumentGrammar(tiny_lm.tokenizer, vocab).constraint({"type": "object", "properties": {"x": {"type": "integer"}}}),
    ]
    for proc in [*defined, ArgumentConstraint]:
        assert issubclass(proc, LogitsProcessor)
    ids = torch.tensor([[1, 2, 3]])
    for proc in instances:
        width = vocab + 2 if isinstance(proc, processors.ToolChoice) else vocab
        scores = torch.randn(1, width)
        before = scores.clone()
        out = LogitsProcessorList([proc])(ids, scores)
        assert out.shape == (1, width) and torch.equal(scores, before)  # a new tensor; the input is left as it was
        assert bool(torch.isfinite(out).any())
    chain = LogitsProcessorList(instances[:3])
    scores = torch.randn(1, vocab + 2)
    one_by_one = scores
    for proc in instances[:3]:
        one_by_one = proc(ids, one_by_one)
    assert torch.equal(chain(ids, scores), one_by_one)


def test_the_gate_is_asked_only_where_auto_may_call_and_its_verdict_masks_words_or_toolkens():
    asked: list[torch.Tensor] = []

    def gate(verdict: bool):
        def ask(scores: torch.Tensor) -> bool:
            asked.append(scores)
            return verdict
        return ask

    scores = vocab_and_tools()[None]
    calls = ToolChoice("auto", 4, ["a", "b"], gate=gate(True))(NO_IDS, scores)[0]
    assert torch.isneginf(calls[:4]).all() and torch.isfinite(calls[4:]).all()
    assert torch.equal(asked[-1], scores)  # asked with the scores before any processor touched them
    words = ToolChoice("auto", 4, ["a", "b"], gate=gate(False))(NO_IDS, scores)[0]
    assert torch.isfinite(words[:4]).all() and torch.isneginf(words[4:]).all()
    asked.clear()
    ToolChoice("required", 4, ["a", "b"], gate=gate(False))(NO_IDS, scores)  # a forced call: the gate has no say
    closed = ToolChoice("auto", 4, ["a", "b"], gate=gate(True))
    closed.wrote_text()  # mid-text: no decision point
    closed(NO_IDS, scores)
    assert asked == []
    refused = ToolChoice("auto", 4, ["a", "b"], gate=gate(True))
    refused.refused(0)  # the call the gate opened for was refused: words, not another tool
    assert torch.isneginf(refused(NO_IDS, scores)[0, 4:]).all() and asked == []


def vocab_and_tools(v=4, n=2):
    return torch.zeros(v + n)


@pytest.mark.parametrize(
    "choice, calls, expect_words, expect_tools",
    [
        ("auto", 0, True, [True, True]),
        ("none", 0, True, [False, False]),
        ("required", 0, False, [True, True]),
        ("required", 1, True, [True, True]),
        ("b", 0, False, [False, True]),
        ("b", 1, True, [False, False]),
    ],
)
def test_tool_choice_masks(choice, calls, expect_words, expect_tools):
    proc = ToolChoice(choice, 4, ["a", "b"], max_calls=4)
    proc.calls_made = calls
    out = proc(NO_IDS, vocab_and_tools()[None])[0]
    assert bool(torch.isfinite(out[:4]).all()) == expect_words
    assert [bool(torch.isfinite(x)) for x in out[4:]] == expect_tools


def test_toolkens_are_masked_mid_text_unless_calls_anywhere():
    proc = ToolChoice("auto", 4, ["a"], anywhere=False)
    proc.wrote_text()
    assert torch.isneginf(proc(NO_IDS, vocab_and_tools(n=1)[None])[0, 4])
    proc = ToolChoice("auto", 4, ["a"], anywhere=True)
    proc.wrote_text()
    assert torch.isfinite(proc(NO_IDS, vocab_and_tools(n=1)[None])[0, 4])


def test_the_tool_just_called_cannot_fire_again_at_once():
    proc = ToolChoice("auto", 4, ["a", "b"])
    proc.called(0)
    out = proc(NO_IDS, vocab_and_tools()[None])[0]
    assert torch.isneginf(out[4]) and torch.isfinite(out[5])


def test_unknown_tool_choice_is_refused():
    from toolken_agent.errors import ToolkenError

    with pytest.raises(ToolkenError, match="tool_choice"):
        ToolChoice("fly", 4, ["a"])


@pytest.mark.parametrize("opener", ["{", "`"])
@pytest.mark.parametrize("after_result, guard, opens_with_brace", [
    (True, True, False),   # the echo a coder model writes after a result is refused
    (True, False, True),   # unless the guard is off
    (False, True, True),   # a reply to the user may still be JSON or code
])
def test_a_reply_right_after_a_tool_result_cannot_open_with_a_json_brace_or_a_code_fence(
        tiny_lm, after_result, guard, opens_with_brace, opener):
    from toolken_agent.conversation import ToolCall
    from toolken_agent.decoding import brace_openers, fence_openers

    toolkens = toolkens_for(tiny_lm, [Ping])
    vocab = tiny_lm.vocab_size
    brace = int((brace_openers if opener == "{" else fence_openers)(tiny_lm.tokenizer, vocab)[0])
    word = tiny_lm.tokenizer.encode("The", add_special_tokens=False)[0]
    fixed = torch.full((vocab + 1,), -1e4)
    fixed[brace], fixed[word] = 10.0, 5.0  # the LM prefers "{" over a word
    decoder = Decoder(toolkens)
    decoder._joint_logits = lambda state: fixed.clone()
    messages = [Message("user", "ping it")]
    if after_result:
        messages += [Message("assistant", "", tool_calls=(ToolCall("ping", {}, "c1"),)),
                     Message("tool", "pong", tool_call_id="c1", name="ping")]
    got = list(decoder.stream(messages, DecodeConfig(max_new_tokens=1, json_echo_guard=guard)))
    reply = got[-1].messages[-1].content
    assert tiny_lm.tokenizer.decode([brace]).strip() and reply
    assert reply.lstrip().startswith(opener) == opens_with_brace
