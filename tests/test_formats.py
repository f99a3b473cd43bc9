"""Public function-calling shapes (xLAM/APIGen, ShareGPT with tool roles) load as OpenAI conversations."""

from __future__ import annotations

import json

import pytest

from toolken_agent.data import load_jsonl
from toolken_agent.errors import DataError
from toolken_agent.formats import as_openai_messages


def write(tmp_path, records):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


XLAM = {"id": 7, "query": "What is 3 plus 4, and the weather in Oslo?",
        "tools": json.dumps([{"name": "add", "description": "Add", "parameters": {}}]),
        "answers": json.dumps([{"name": "add", "arguments": {"a": 3, "b": 4}},
                               {"name": "weather_now", "arguments": {"city": "Oslo"}}])}

SHAREGPT = {"system": "You are helpful.", "conversations": [
    {"from": "human", "value": "3 plus 4?"},
    {"from": "function_call", "value": json.dumps({"name": "add", "arguments": {"a": 3, "b": 4}})},
    {"from": "observation", "value": "7"},
    {"from": "gpt", "value": "It is 7."},
]}


def test_xlam_line_becomes_a_request_and_its_parallel_calls(tmp_path, small_toolset):
    (conversation,) = load_jsonl(write(tmp_path, [XLAM]), small_toolset).conversations
    user, assistant = conversation.messages
    assert (user.role, user.content) == ("user", XLAM["query"])
    assert [(c.name, c.args) for c in assistant.tool_calls] == [("add", {"a": 3, "b": 4}), ("weather_now", {"city": "Oslo"})]


def test_xlam_answers_may_be_a_list_rather_than_a_json_string(tmp_path, small_toolset):
    record = dict(XLAM, answers=[{"name": "add", "arguments": '{"a": 1, "b": 2}'}])
    (conversation,) = load_jsonl(write(tmp_path, [record]), small_toolset).conversations
    assert conversation.messages[1].tool_calls[0].args == {"a": 1, "b": 2}


def test_xlam_without_calls_needs_the_reply_in_words(tmp_path, small_toolset):
    worded = {"query": "Hello!", "answers": "[]", "answer": "Hi there."}
    (conversation,) = load_jsonl(write(tmp_path, [worded]), small_toolset).conversations
    assert conversation.messages[1].content == "Hi there." and not conversation.messages[1].tool_calls
    with pytest.raises(DataError, match=r"data.jsonl:1: 'answers' is empty"):
        load_jsonl(write(tmp_path, [{"query": "Hello!", "answers": "[]"}]), small_toolset)


def test_sharegpt_tool_roles_map_to_calls_results_and_replies(tmp_path, small_toolset):
    (conversation,) = load_jsonl(write(tmp_path, [SHAREGPT]), small_toolset).conversations
    assert [m.role for m in conversation.messages] == ["system", "user", "assistant", "tool", "assistant"]
    call = conversation.messages[2].tool_calls[0]
    assert (call.name, call.args) == ("add", {"a": 3, "b": 4})
    assert conversation.messages[3].tool_call_id == call.id


def test_one_file_may_mix_the_shapes(tmp_path, small_toolset):
    openai = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
    report = load_jsonl(write(tmp_path, [openai, XLAM, SHAREGPT]), small_toolset)
    assert len(report.conversations) == 3


@pytest.mark.parametrize("record, message", [
    ({"query": "x", "answers": "[{oops"}, "'answers' is a string but not valid JSON"),
    ({"query": "x", "answers": [{"arguments": {}}]}, "each call needs a 'name'"),
    ({"query": "x", "answers": [{"name": "fly", "arguments": {}}]}, "unknown tool 'fly'"),
    ({"query": "", "answers": "[]"}, "'query' must be a non-empty string"),
    ({"conversations": [{"from": "robot", "value": "x"}]}, "each turn needs 'from'"),
    ({"conversations": []}, "'conversations' must be a non-empty list"),
    ({"prompt": "x"}, "expected an object with 'messages'"),
])
def test_malformed_public_shapes_are_one_line_errors_naming_the_line(tmp_path, small_toolset, record, message):
    with pytest.raises(DataError, match=message) as info:
        load_jsonl(write(tmp_path, [record]), small_toolset)
    assert "\n" not in str(info.value) and ":1: " in str(info.value)


def test_model_written_values_are_parsed_as_json_never_evaluated():
    hostile = {"query": "x", "answers": "__import__('os').system('echo pwned')"}
    with pytest.raises(ValueError, match="not valid JSON"):
        as_openai_messages(hostile)
