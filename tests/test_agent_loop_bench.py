"""The agent-loop benchmark (examples/agent_loop, examples/benchmarks/agent_loop.py), without a model.

The data must fit the tools' schemas and be what the generator writes; the tools must
declare their side effects and give short deterministic results; the scoring helpers
are pinned on hand-made agent transcripts whose right scores are known.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.agent_loop import make_data, office_tools  # noqa: E402
from examples.agent_loop.office_tools import TOOLS  # noqa: E402
from examples.benchmarks.agent_loop import args_match, contains_result, score, summarise  # noqa: E402
from toolken_agent.data import answers_without_tools, load_jsonl  # noqa: E402
from toolken_agent.toolset import load_toolset, make_toolset  # noqa: E402

DATA = ROOT / "examples" / "agent_loop"
ACTING = {"create_reminder", "send_message"}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def toolset():
    return make_toolset(TOOLS)


# -- tools ----------------------------------------------------------------------------------
def test_the_toolset_has_at_least_11_tools_each_declaring_its_side_effects(toolset):
    assert len(toolset) >= 11
    flags = {spec.name: spec.read_only for spec in toolset}
    assert {name for name, ro in flags.items() if ro is False} == ACTING
    assert all(ro is True for name, ro in flags.items() if name not in ACTING)
    # the file loads the same way from the command line
    assert load_toolset(str(DATA / "office_tools.py")).names == toolset.names


def test_currencies_are_an_enum_in_the_schema(toolset):
    props = toolset.get("convert_currency").parameters["properties"]
    assert "USD" in props["from_currency"]["enum"] and props["from_currency"]["enum"] == props["to_currency"]["enum"]


def test_tool_results_are_short_deterministic_and_rounded():
    assert office_tools.km_to_miles.invoke({"km": 10}) == 6.21
    assert office_tools.celsius_to_fahrenheit.invoke({"celsius": 100}) == 212
    assert office_tools.percent_of.invoke({"percent": 15, "number": 80}) == 12
    assert office_tools.convert_currency.invoke({"amount": 100, "from_currency": "USD", "to_currency": "EUR"}) == 92
    assert office_tools.tip_amount.invoke({"bill": 62.5, "percent": 18}) == 11.25
    assert office_tools.bmi.invoke({"weight_kg": 70, "height_cm": 175}) == 22.86
    assert office_tools.days_between.invoke({"start_date": "2024-02-10", "end_date": "2024-02-29"}) == 19
    assert "invalid date" in office_tools.days_between.invoke({"start_date": "March 3", "end_date": "2024-02-29"}).lower()
    assert office_tools.get_weather.invoke({"city": "new  york"}) == "Cloudy, 19°C"
    assert "no weather data" in office_tools.get_weather.invoke({"city": "Atlantis"}).lower()
    assert office_tools.capital_of.invoke({"country": "Japan"}) == "Tokyo"
    assert office_tools.word_count.invoke({"text": "one two  three"}) == 3
    assert office_tools.reverse_text.invoke({"text": "abc"}) == "cba"


def test_acting_tools_only_append_to_their_in_memory_lists():
    office_tools.reset()
    office_tools.create_reminder.invoke({"text": "call mom", "when": "tomorrow"})
    office_tools.send_message.invoke({"recipient": "Bob", "text": "hi"})
    assert office_tools.REMINDERS == [{"text": "call mom", "when": "tomorrow"}]
    assert office_tools.OUTBOX == [{"recipient": "Bob", "text": "hi"}]
    office_tools.reset()
    assert office_tools.REMINDERS == [] and office_tools.OUTBOX == []


# -- data -----------------------------------------------------------------------------------
def test_train_jsonl_is_call_only_and_validates_against_the_schemas(toolset):
    conversations = load_jsonl(DATA / "train.jsonl", toolset).conversations  # raises on any bad line
    calls = Counter(name for c in conversations for name in c.tool_names)
    assert set(calls) == set(toolset.names) and min(calls.values()) >= 7
    assert 80 <= sum(calls.values()) <= 110
    assert sum(answers_without_tools(c) for c in conversations) == 10
    for c in conversations:  # the shape of xLAM / Glaive: request and call, no result, no answer
        assert [m.role for m in c.messages] == ["user", "assistant"]
        assert all(m.role != "tool" for m in c.messages)


def test_test_jsonl_holds_20_tool_requests_covering_every_tool_and_10_without(toolset):
    items = read_jsonl(DATA / "test.jsonl")
    tool_items = [t for t in items if t["tool"] is not None]
    assert len(tool_items) == 20 and len(items) - len(tool_items) == 10
    assert {t["tool"] for t in tool_items} == set(toolset.names)
    for item in tool_items:
        spec = toolset.get(item["tool"])
        result = str(spec.func(**spec.validate(item["args"])))
        assert not result.lower().startswith(("unknown", "no weather", "invalid")), (item, result)
    office_tools.reset()


def test_test_questions_are_held_out_from_training():
    train = read_jsonl(DATA / "train.jsonl")
    train_questions = {line["messages"][0]["content"].lower() for line in train}
    train_args = {line["messages"][1]["tool_calls"][0]["function"]["arguments"]
                  for line in train if line["messages"][1].get("tool_calls")}
    for item in read_jsonl(DATA / "test.jsonl"):
        assert item["question"].lower() not in train_questions
        if item["tool"] is not None:
            assert json.dumps(item["args"]) not in train_args, item


def test_the_files_are_what_the_generator_writes():
    assert read_jsonl(DATA / "train.jsonl") == make_data.train_lines(0)
    assert read_jsonl(DATA / "test.jsonl") == make_data.test_lines(0)
    assert make_data.train_lines(0) == make_data.train_lines(0)
    assert make_data.train_lines(1) != make_data.train_lines(0)


# -- scoring --------------------------------------------------------------------------------
def test_args_match_normalises_numbers_and_string_case_only():
    assert args_match({"km": 42}, {"km": 42.0})
    assert args_match({"city": " new  YORK "}, {"city": "New York"})
    assert args_match({"a": 1, "b": "X"}, {"b": "x", "a": 1.0})
    assert not args_match({"km": 42.5}, {"km": 42})
    assert not args_match({"km": "42"}, {"km": 42})
    assert not args_match({"km": 42, "extra": 1}, {"km": 42})
    assert not args_match({}, {"km": 42})
    assert not args_match(None, {"km": 42})


def test_contains_result_accepts_the_number_as_returned_or_without_trailing_zero():
    assert contains_result("That is about 6.21 miles.", "6.21")
    assert contains_result("The tip is $1,234.50 in total", "1234.50")
    assert contains_result("84 it is.", "84.0")
    assert contains_result("It is 84.0.", "84.0")
    assert not contains_result("That is about 16.215 miles.", "6.21")
    assert not contains_result("The total is 16.21.", "6.21")
    assert not contains_result("Version 2.6.21 it is", "6.21")
    assert not contains_result("About 6.2 miles.", "6.21")
    assert not contains_result("The answer is 6", "6.21")
    assert not contains_result("", "6.21")


def test_contains_result_matches_text_results_case_insensitively():
    assert contains_result("In Rome it is sunny, 29°C today.", "Sunny, 29°C")
    assert contains_result("Done: message sent to Emma", "Message sent to Emma.")
    assert not contains_result("It is sunny in Rome.", "Sunny, 29°C")


def call(name: str, args: dict, n: int = 1) -> dict:
    return {"name": name, "args": args, "id": f"call_{n}", "type": "tool_call"}


ITEM = {"question": "What's 320 kilometers in miles?", "tool": "km_to_miles", "args": {"km": 320}}


def test_score_of_a_clean_loop_call_then_answer():
    messages = [HumanMessage(ITEM["question"]), AIMessage("", tool_calls=[call("km_to_miles", {"km": 320.0})]),
                ToolMessage("198.84", tool_call_id="call_1", name="km_to_miles"),
                AIMessage("320 km is 198.84 miles.")]
    r = score(ITEM, messages, 1.234)
    assert r["tool"] == "km_to_miles" and r["right_tool"] and r["right_args"]
    assert r["model_calls"] == 2 and r["ended_within_2_model_calls"]
    assert r["answer_has_result"] and not r["empty_final"] and not r["repeated_call"] and r["all_right"]
    assert r["seconds"] == 1.23


def test_score_of_the_call_only_failure_refire_then_empty_reply():
    messages = [HumanMessage(ITEM["question"]), AIMessage("", tool_calls=[call("km_to_miles", {"km": 320})]),
                ToolMessage("198.84", tool_call_id="call_1", name="km_to_miles"),
                AIMessage("", tool_calls=[call("km_to_miles", {"km": 320}, 2)]),
                ToolMessage("198.84", tool_call_id="call_2", name="km_to_miles"),
                AIMessage("")]
    r = score(ITEM, messages, 5.0)
    assert r["right_tool"] and r["right_args"]
    assert r["model_calls"] == 3 and not r["ended_within_2_model_calls"]
    assert r["empty_final"] and not r["answer_has_result"] and r["repeated_call"] and not r["all_right"]


def test_score_of_a_wrong_tool_and_of_a_recursion_error():
    wrong = [HumanMessage(ITEM["question"]), AIMessage("", tool_calls=[call("percent_of", {"percent": 320, "number": 1})]),
             ToolMessage("3.2", tool_call_id="call_1", name="percent_of"), AIMessage("It is 3.2.")]
    r = score(ITEM, wrong, 1.0)
    assert r["tool"] == "percent_of" and not r["right_tool"] and not r["right_args"]
    no_call = score(ITEM, [HumanMessage(ITEM["question"]), AIMessage("About 200 miles.")], 1.0)
    assert no_call["tool"] is None and not no_call["right_tool"]
    assert not no_call["ended_within_2_model_calls"]  # answering without the tool is not a loop that ended
    assert r["answer_has_result"]  # the answer quotes the result of the call made, right or wrong
    looping = [HumanMessage(ITEM["question"]), AIMessage("", tool_calls=[call("km_to_miles", {"km": 320})]),
               ToolMessage("198.84", tool_call_id="call_1", name="km_to_miles"),
               AIMessage("", tool_calls=[call("km_to_miles", {"km": 320}, 2)])]
    r = score(ITEM, looping, 1.0, recursion_error=True)
    assert r["recursion_error"] and not r["ended_within_2_model_calls"] and not r["answer_has_result"]


def test_score_of_requests_that_need_no_tool():
    item = {"question": "Hey!", "tool": None}
    quiet = score(item, [HumanMessage("Hey!"), AIMessage("Hello!")], 0.5)
    noisy = score(item, [HumanMessage("Hey!"), AIMessage("", tool_calls=[call("get_weather", {"city": "Hey"})])], 0.5)
    assert quiet["called"] is False and noisy["called"] is True
    assert "right_tool" not in quiet


def test_summarise_takes_tool_shares_over_tool_requests_and_quiet_over_the_rest():
    good = [HumanMessage("q"), AIMessage("", tool_calls=[call("km_to_miles", {"km": 320})]),
            ToolMessage("198.84", tool_call_id="call_1"), AIMessage("198.84 miles")]
    bad = [HumanMessage("q"), AIMessage("", tool_calls=[call("bmi", {"weight_kg": 1, "height_cm": 1})]),
           ToolMessage("10000", tool_call_id="call_1"), AIMessage("")]
    records = [score(ITEM, good, 2.0), score(ITEM, bad, 4.0, recursion_error=True),
               score({"question": "hi", "tool": None}, [AIMessage("hello")], 1.0),
               score({"question": "yo", "tool": None}, [AIMessage("", tool_calls=[call("bmi", {})])], 1.0)]
    records[1]["acted"] = {"reminders": [{"text": "a", "when": "b"}] * 2, "messages": []}
    s = summarise(records)
    assert (s["n"], s["n_tool"], s["n_no_tool"]) == (4, 2, 2)
    assert s["right_tool"] == 0.5 and s["right_args"] == 0.5 and s["answer_has_result"] == 0.5
    assert s["ended_within_2_model_calls"] == 0.5 and s["empty_final"] == 0.5 and s["all_right"] == 0.5
    assert s["recursion_errors"] == 1 and s["no_tool_quiet"] == 0.5 and s["repeated_actions"] == 1
    assert s["seconds_per_question"] == 2.0


def test_result_copy_settings_are_read_as_copy_and_continue_biases():
    from examples.benchmarks.result_copy import parse_settings

    assert parse_settings("0:0, 4:6") == [(0.0, 0.0), (4.0, 6.0)]


def test_the_enum_requests_are_held_out_valid_calls_each_with_an_enum_field():
    from examples.agent_loop import home_tools
    from examples.benchmarks.enum_choices import ENUM_REQUESTS, gold_calls
    from toolken_agent.choices import choice_fields

    toolset = make_toolset([*TOOLS, *home_tools.TOOLS], "both")
    specs = {s.name: s for s in toolset.specs}
    calls = gold_calls(ENUM_REQUESTS, toolset)
    trained = {q for path in (DATA / "train.jsonl", DATA / "home_train.jsonl") for q, _, _ in gold_calls(path, toolset)}
    assert len(calls) == 20 and not trained & {q for q, _, _ in calls}
    for question, tool, args in calls:
        assert choice_fields(dict(specs[tool].parameters)), tool
        specs[tool].validate(args)
