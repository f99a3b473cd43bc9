"""Loading OpenAI chat-format JSONL: every bad input names its file and line."""

from __future__ import annotations

import json

import pytest

from toolken_agent.conversation import Conversation, Message
from toolken_agent.augment import example_conversations, with_built_in_negatives
from toolken_agent.data import NEGATIVE_EXAMPLES, answers_without_tools, load_jsonl, split_holdout
from toolken_agent.errors import DataError


def call(name, args):
    return {"id": "c1", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


GOOD = {"messages": [{"role": "user", "content": "3 plus 4?"},
                     {"role": "assistant", "content": None, "tool_calls": [call("add", {"a": 3, "b": 4})]},
                     {"role": "tool", "tool_call_id": "c1", "content": "7"},
                     {"role": "assistant", "content": "It is 7."}]}


def write_lines(tmp_path, lines):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_openai_format_loads_with_calls_results_and_replies(tmp_path, small_toolset):
    report = load_jsonl(write_lines(tmp_path, [GOOD, ""]), small_toolset)
    (conversation,) = report.conversations
    assert [m.role for m in conversation.messages] == ["user", "assistant", "tool", "assistant"]
    assert conversation.messages[1].tool_calls[0].args == {"a": 3, "b": 4}
    assert conversation.source.endswith("data.jsonl:1")


BAD_CALL_ARGS = {"messages": [{"role": "user", "content": "x"},
                              {"role": "assistant", "tool_calls": [call("add", {"a": "three"})]}]}


@pytest.mark.parametrize(
    "line, message",
    [
        ("{oops", "not valid JSON"),
        ({"prompt": "x"}, "expected an object with 'messages'"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "unknown role"),
        ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [call("fly", {})]}]}, "unknown tool 'fly'"),
        (BAD_CALL_ARGS, "arguments do not fit the schema"),
        ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
            {"function": {"name": "add", "arguments": "{not json"}}]}]}, "not valid JSON"),
        ({"messages": [{"role": "user", "content": "only a question"}]}, "no assistant turn"),
    ],
)
def test_bad_lines_are_errors_naming_file_and_line(tmp_path, small_toolset, line, message):
    path = write_lines(tmp_path, [GOOD, line])
    with pytest.raises(DataError, match=message) as info:
        load_jsonl(path, small_toolset)
    assert str(info.value).startswith(f"{path}:2: ")


def test_lenient_loading_skips_and_counts_bad_lines(tmp_path, small_toolset):
    report = load_jsonl(write_lines(tmp_path, [GOOD, "{oops", BAD_CALL_ARGS, GOOD]), small_toolset, lenient=True)
    assert len(report.conversations) == 2
    assert report.skipped == 2
    assert ":2: not valid JSON" in report.first_errors[0]


def test_empty_and_missing_files_are_errors(tmp_path, small_toolset):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="no usable conversations"):
        load_jsonl(empty, small_toolset)
    with pytest.raises(DataError, match="no such file"):
        load_jsonl(tmp_path / "missing.jsonl", small_toolset)


def test_tool_examples_become_calls_with_results_plus_negatives(small_toolset):
    conversations = example_conversations(small_toolset)
    calls = [c for c in conversations if c.tool_names]
    assert [c.tool_names[0] for c in calls] == ["add", "add", "weather_now"]
    first = calls[0].messages
    assert [m.role for m in first] == ["user", "assistant", "tool", "assistant"]
    assert first[2].content == "7.0"  # add is read-only: run for a real result
    assert calls[2].messages[2].content == "Done."  # weather_now declares nothing: never run, a placeholder
    assert any(not c.tool_names for c in conversations)


def test_data_where_every_request_calls_a_tool_gets_the_built_in_no_tool_requests(small_toolset):
    only_calls = [c for c in example_conversations(small_toolset, with_negatives=False)]
    assert only_calls and all(not answers_without_tools(c) for c in only_calls)
    extended = with_built_in_negatives(only_calls)
    assert extended[: len(only_calls)] == only_calls
    added = extended[len(only_calls):]
    assert len(added) == len(NEGATIVE_EXAMPLES) and all(answers_without_tools(c) for c in added)
    assert [c.messages[0].content for c in added] == [prompt for prompt, _ in NEGATIVE_EXAMPLES]


def test_data_that_already_answers_some_request_in_words_is_left_as_it_is(small_toolset):
    mixed = example_conversations(small_toolset, with_negatives=False) + [
        Conversation((Message("user", "hi"), Message("assistant", "Hello!")))]
    assert with_built_in_negatives(mixed) == mixed
    assert with_built_in_negatives([]) == []


def test_holdout_split_is_deterministic_and_disjoint():
    train, held = split_holdout(50, 0.2, seed=3)
    assert (train, held) == split_holdout(50, 0.2, seed=3)
    assert len(held) == 10 and not set(train) & set(held)
    assert split_holdout(5, 0.2) == ([0, 1, 2, 3, 4], [])


def test_training_calls_become_argument_demos_for_tools_without_examples(tmp_path, small_toolset):
    from toolken_agent.data import call_demos, with_demos
    from toolken_agent.toolset import make_toolset
    from toolken_agent.tool import ToolSpec

    report = load_jsonl(write_lines(tmp_path, [GOOD]), small_toolset)
    demos = call_demos(report.conversations)
    assert demos == {"add": [{"prompt": "3 plus 4?", "args": {"a": 3, "b": 4}}]}
    bare = ToolSpec("add", "Add two numbers.", {"type": "object", "properties": {"a": {"type": "number"}}})
    (spec,) = with_demos(make_toolset([bare]), demos).specs
    assert spec.examples[0].prompt == "3 plus 4?" and spec.fingerprint == bare.fingerprint
