"""The agent loop on the embedded default model: call-only training data, then create_agent.

The toolset and data are the agent-loop benchmark's (examples/agent_loop/): everyday
tools nobody in the core wrote, and training conversations that hold a request and its
call only, as public function-calling sets do.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def office_checkpoint(smol_lm, tmp_path_factory):
    from examples.benchmarks.agent_loop import TRAIN_FILE
    from examples.agent_loop import office_tools
    from toolken_agent.data import load_jsonl
    from toolken_agent.toolkens import Toolkens
    from toolken_agent.toolset import make_toolset

    toolset = make_toolset(office_tools.TOOLS, "office")
    conversations = load_jsonl(TRAIN_FILE, toolset).conversations
    toolkens, report = Toolkens.fit(smol_lm, toolset, conversations)
    path = tmp_path_factory.mktemp("office") / "toolkens"
    toolkens.save(path)
    return path, report


def ask(question: str, toolkens: str | None):
    from langchain.agents import create_agent

    from examples.agent_loop import office_tools
    from toolken_agent import ChatToolken

    office_tools.reset()
    agent = create_agent(ChatToolken(toolkens=toolkens, max_tokens=48), office_tools.TOOLS)
    messages = agent.invoke({"messages": [("user", question)]}, {"recursion_limit": 8})["messages"]
    ais = [m for m in messages if m.type == "ai"]
    calls = [c for m in ais for c in m.tool_calls]
    return ais, calls, messages


def test_call_only_training_gives_replies_after_results_and_a_gate(office_checkpoint):
    _, report = office_checkpoint
    assert report.results_added > 80  # every call-only conversation got a result and a reply
    assert report.gate and report.gate["false_positive_rate"] <= report.gate["target_false_positives"]


@pytest.mark.parametrize("question, tool, result", [
    ("The thermostat reads 40 degrees Celsius. Tell me the Fahrenheit equivalent.", "celsius_to_fahrenheit", "104"),
    ("What's 320 kilometers expressed in miles?", "km_to_miles", "198.84"),
])
def test_the_agent_calls_once_then_answers_with_the_result(office_checkpoint, question, tool, result):
    path, _ = office_checkpoint
    ais, calls, messages = ask(question, str(path))
    assert [c["name"] for c in calls] == [tool]
    assert len(ais) == 2 and not ais[-1].tool_calls
    assert ais[-1].content.strip() and result in ais[-1].content


def test_a_request_that_needs_no_tool_gets_an_answer_and_no_call(office_checkpoint):
    path, _ = office_checkpoint
    ais, calls, _ = ask("Write a limerick about a cat.", str(path))
    assert calls == [] and len(ais) == 1 and ais[0].content.strip()


def test_zero_shot_tools_fire_on_a_clear_request_and_the_loop_ends(smol_lm):
    ais, calls, _ = ask("The thermostat reads 40 degrees Celsius. Tell me the Fahrenheit equivalent.", None)
    assert [c["name"] for c in calls] == ["celsius_to_fahrenheit"] and calls[0]["args"] == {"celsius": 40}
    assert len(ais) == 2 and not ais[-1].tool_calls and "104" in ais[-1].content


def test_zero_shot_tools_stay_quiet_on_a_request_about_nothing_they_do(smol_lm):
    ais, calls, _ = ask("Write a limerick about a cat.", None)
    assert calls == [] and ais[-1].content.strip()


@pytest.mark.parametrize("question, source, target", [
    ("I'll exchange 120 EUR at the airport; how many Swiss francs will that give me?", "EUR", "CHF"),
    ("How many yen would 75 GBP get me?", "GBP", None),  # the model's own pick of the other: not GBP
])
def test_a_named_currency_goes_to_the_field_its_number_gives_it_and_the_other_is_called_otherwise(
        office_checkpoint, question, source, target):
    path, _ = office_checkpoint
    ais, calls, messages = ask(question, str(path))
    assert [c["name"] for c in calls] == ["convert_currency"]
    args = calls[0]["args"]
    assert args["from_currency"] == source and args["to_currency"] != source
    assert target is None or args["to_currency"] == target
    result = [m.content for m in messages if m.type == "tool"][0]
    assert result in ais[-1].content
