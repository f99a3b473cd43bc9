"""Guarantee: a failing tool is an error *result*, never a crash.

A tool that raises (``KeyboardInterrupt`` included), exits, runs past its timeout, or
returns something that cannot be shown as text gives an error outcome in the executor,
an error ``ToolResult`` in the decoder, and a ``ToolMessage`` with ``status="error"``
when a LangChain tool node runs it. Either way the conversation goes on: the next turn
decodes.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest
import torch
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool

from toolken_agent.conversation import Message
from toolken_agent.decoding import CallFinished, Decoder, DecodeConfig, Finished, ToolResult
from toolken_agent.executor import run_tool
from toolken_agent.integrations.langchain import as_langchain_tool
from toolken_agent.tool import Tool, to_spec
from toolken_agent.toolkens import Toolkens
from toolken_agent.toolset import make_toolset

TIMEOUT = 0.2  # seconds; the slow tool would take 10
RELEASE = threading.Event()  # lets the slow tool's thread finish once its call timed out


@pytest.fixture(autouse=True)
def release_slow_tools():
    RELEASE.clear()
    yield
    RELEASE.set()


class Raises(Tool):
    """Look up a value that is not there."""

    read_only = True  # the tiny model's arguments trace to nothing (toolken_agent.provenance)

    def run(self, key: str) -> str:
        raise RuntimeError(f"no value for {key}")


class Exits(Tool):
    """Run a command-line program that gives up."""

    read_only = True  # the tiny model's arguments trace to nothing (toolken_agent.provenance)

    def run(self, key: str) -> str:
        sys.exit(3)


class ReturnsObject(Tool):
    """Build an object that is not text."""

    read_only = True  # the tiny model's arguments trace to nothing (toolken_agent.provenance)

    def run(self, key: str) -> object:
        return object()


class ReturnsCircular(Tool):
    """Build data that refers to itself."""

    read_only = True  # the tiny model's arguments trace to nothing (toolken_agent.provenance)

    def run(self, key: str) -> list:
        data: list[Any] = [key]
        data.append(data)
        return data


class ReturnsTooDeep(Tool):
    """Build data nested deeper than any JSON writer goes."""

    read_only = True  # the tiny model's arguments trace to nothing (toolken_agent.provenance)

    def run(self, key: str) -> list:
        data: list[Any] = []
        for _ in range(5_000):
            data = [data]
        return data


class Interrupts(Tool):
    """Wait for an answer typed at a terminal."""

    read_only = True  # the tiny model's arguments trace to nothing (toolken_agent.provenance)

    def run(self, key: str) -> str:
        raise KeyboardInterrupt  # the tool's own, not the user's Ctrl-C: it escaped run_tool and the decoder


class Hangs(Tool):
    """Wait for a slow service."""

    read_only = True  # the tiny model's arguments trace to nothing (toolken_agent.provenance)

    def run(self, key: str) -> str:
        RELEASE.wait(10)
        return "too late"


FAILING = {  # tool -> what its error result says
    Raises: "no value for",
    Exits: "SystemExit",
    Interrupts: "KeyboardInterrupt",
    ReturnsObject: "not text",
    ReturnsCircular: "not JSON",
    ReturnsTooDeep: "not JSON",
    Hangs: f"did not finish within {TIMEOUT:g} s",
}
IDS = [t.__name__ for t in FAILING]


# -- the executor ----------------------------------------------------------------------
@pytest.mark.parametrize("tool", FAILING, ids=IDS)
def test_the_executor_turns_a_failing_tool_into_an_error_outcome(tool):
    outcome = run_tool(to_spec(tool), {"key": "x"}, timeout=TIMEOUT)
    assert outcome.is_error
    assert outcome.content.startswith("Error: ") and FAILING[tool] in outcome.content
    assert "\n" not in outcome.content


def test_a_hanging_tool_is_abandoned_at_the_timeout_not_waited_for():
    import time

    start = time.perf_counter()
    run_tool(to_spec(Hangs), {"key": "x"}, timeout=TIMEOUT)
    assert time.perf_counter() - start < TIMEOUT + 2.0


def test_hanging_tools_do_not_block_later_calls():
    for _ in range(10):  # more than the pool has workers
        assert run_tool(to_spec(Hangs), {"key": "x"}, timeout=0.05).is_error

    class Quick(Tool):
        """Answer at once."""

        def run(self) -> str:
            return "ok"

    assert run_tool(to_spec(Quick), {}, timeout=5).content == "ok"


def test_a_hung_tool_does_not_keep_the_process_from_exiting():
    import subprocess
    import textwrap

    script = textwrap.dedent("""
        import time
        from toolken_agent.executor import run_tool
        from toolken_agent.tool import to_spec

        def stall() -> str:
            '''Never answer.'''
            time.sleep(600)
            return "late"

        print(run_tool(to_spec(stall), {}, timeout=0.1).content)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "did not finish within 0.1 s" in done.stdout


# -- the decoder -----------------------------------------------------------------------
def forced(lm, tool) -> Decoder:
    """A decoder over one tool whose toolken always wins at the start of a turn."""
    toolkens = Toolkens.from_priors(lm, make_toolset([tool]), prior="random")
    with torch.no_grad():
        toolkens.head.bias.fill_(1e4)
    return Decoder(toolkens)


@pytest.mark.parametrize("tool", FAILING, ids=IDS)
def test_the_decoder_reports_a_failing_tool_and_the_conversation_continues(tiny_lm, tool):
    decoder = forced(tiny_lm, tool)
    # The random model's arguments trace to nothing the user wrote; provenance is pinned elsewhere.
    config = DecodeConfig(max_calls=1, max_new_tokens=3, tool_timeout=TIMEOUT, trace_arguments=False)
    events = list(decoder.stream([Message("user", "look up x")], config, run_tools=True))
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert result.is_error and FAILING[tool] in result.content
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert [m.role for m in finished.messages][:3] == ["user", "assistant", "tool"]
    assert finished.messages[2].content == result.content

    history = [*finished.messages, Message("user", "and now?")]
    after = list(decoder.stream(history, DecodeConfig(tool_choice="none", max_new_tokens=3), run_tools=True))
    assert isinstance(after[-1], Finished) and after[-1].reason in ("stop", "length")


def test_arguments_that_never_complete_are_an_error_and_the_conversation_continues(tiny_lm):
    decoder = forced(tiny_lm, Raises)  # had it run, its result would say "no value for"
    events = list(decoder.stream([Message("user", "look up x")],
                                 DecodeConfig(max_calls=1, max_argument_tokens=1, max_new_tokens=2), run_tools=True))
    (call,) = [e for e in events if isinstance(e, CallFinished)]
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert call.error and result.is_error and "arguments incomplete or invalid" in result.content
    history = [*events[-1].messages, Message("user", "try again")]
    after = list(decoder.stream(history, DecodeConfig(tool_choice="none", max_new_tokens=3)))
    assert isinstance(after[-1], Finished)


# -- LangChain -------------------------------------------------------------------------
@pytest.mark.parametrize("written", ['{"key":"x', '{"key":99', '{"key":', '{"key":"a\\', '{"key":[1,', "", '{"key":1}'])
def test_incomplete_arguments_reach_langchain_as_an_invalid_call_never_a_runnable_one(written):
    from langchain_core.messages import AIMessageChunk

    from toolken_agent.conversation import ToolCall
    from toolken_agent.events import ArgumentsChunk, CallStarted
    from toolken_agent.integrations.langchain import call_chunk

    streamed = [CallStarted(0, "call_1", "lookup"), *(ArgumentsChunk(0, c) for c in (written[:4], written[4:]) if c),
                CallFinished(0, ToolCall("lookup", {}, "call_1"), error="arguments incomplete", raw_arguments=written)]
    merged = AIMessageChunk(content="")
    for event in streamed:
        merged += AIMessageChunk(content="", tool_call_chunks=[call_chunk(event)])
    assert merged.tool_calls == []  # LangChain's partial-JSON repair must not turn it into a call
    (invalid,) = merged.invalid_tool_calls
    assert invalid["name"] == "lookup" and invalid["id"] == "call_1" and invalid["args"].startswith(written)


def tool_call(name: str, call_id: str = "call_1") -> dict[str, Any]:
    return {"type": "tool_call", "name": name, "args": {"key": "x"}, "id": call_id}


def langchain_tools() -> list[BaseTool]:
    return [as_langchain_tool(t, timeout=TIMEOUT) for t in FAILING]


@pytest.mark.parametrize("tool", FAILING, ids=IDS)
def test_a_failing_tool_gives_an_error_tool_message_in_langchain(tool):
    message = as_langchain_tool(tool, timeout=TIMEOUT).invoke(tool_call(to_spec(tool).name))
    assert isinstance(message, ToolMessage)
    assert message.status == "error" and FAILING[tool] in message.content


def tool_node_graph():
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode

    graph = StateGraph(MessagesState)
    graph.add_node("tools", ToolNode(langchain_tools()))
    graph.add_edge(START, "tools")
    graph.add_edge("tools", END)
    return graph.compile()


def all_failing_calls() -> AIMessage:
    return AIMessage("", tool_calls=[tool_call(to_spec(t).name, f"call_{i}") for i, t in enumerate(FAILING)])


def check_error_messages(messages: list[Any]) -> None:
    results = [m for m in messages if isinstance(m, ToolMessage)]
    assert len(results) == len(FAILING)
    by_id = {m.tool_call_id: m for m in results}
    for i, tool in enumerate(FAILING):
        assert by_id[f"call_{i}"].status == "error" and FAILING[tool] in by_id[f"call_{i}"].content


def test_a_langgraph_tool_node_turns_every_failure_into_an_error_message():
    state = tool_node_graph().invoke({"messages": [HumanMessage("look up x"), all_failing_calls()]})
    check_error_messages(state["messages"])


async def test_an_async_tool_node_turns_every_failure_into_an_error_message():
    state = await tool_node_graph().ainvoke({"messages": [HumanMessage("look up x"), all_failing_calls()]})
    check_error_messages(state["messages"])


def test_a_langgraph_agent_with_chat_toolken_survives_each_failing_tool(tiny_model_dir):
    """Model -> tool node -> model: ChatToolken calls a failing tool, reads the error, answers."""
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    from toolken_agent import ChatToolken

    llm = ChatToolken(model=str(tiny_model_dir), dtype="float32", max_tokens=4)
    tools = langchain_tools()

    def model(state: MessagesState) -> dict[str, list]:
        answered = any(isinstance(m, ToolMessage) for m in state["messages"])
        name = state["messages"][0].content
        bound = llm.bind_tools(tools, tool_choice="none" if answered else name)
        return {"messages": [bound.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", model)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition)
    graph.add_edge("tools", "model")
    agent = graph.compile()
    for tool in FAILING:
        name = to_spec(tool).name
        messages = agent.invoke({"messages": [HumanMessage(name)]}, {"recursion_limit": 6})["messages"]
        kinds = [type(m).__name__ for m in messages]
        assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"], name
        assert messages[1].tool_calls[0]["name"] == name
        assert messages[2].status == "error" and FAILING[tool] in messages[2].content
        assert not messages[3].tool_calls
