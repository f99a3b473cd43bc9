"""Guarantee: bad training data is a clear one-line error naming the file and line.

Strict loading stops at the first bad line with a ``DataError`` that says
``path:line: what is wrong``; lenient loading skips bad lines and counts them, so that
kept + skipped always equals the lines read (nothing is dropped silently). Huge files
stream and huge lines are refused without being read whole. The CLI turns each error
into one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

import toolken_agent.data as data_module
from conftest import CLI_TOOLS as TOOLS
from toolken_agent.cli import app
from toolken_agent.data import load_jsonl
from toolken_agent.errors import DataError


def call(name: str, args) -> dict:
    arguments = args if isinstance(args, str) else json.dumps(args)
    return {"id": "c1", "type": "function", "function": {"name": name, "arguments": arguments}}


def record(*messages: dict) -> bytes:
    return json.dumps({"messages": list(messages)}).encode()


USER = {"role": "user", "content": "What is 3 plus 4?"}
GOOD = record(USER, {"role": "assistant", "tool_calls": [call("add", {"a": 3, "b": 4})]},
              {"role": "tool", "tool_call_id": "c1", "content": "7"}, {"role": "assistant", "content": "It is 7."})
GOOD_TEXT = record(USER, {"role": "assistant", "content": "Seven."})


def calling(name: str, args) -> bytes:
    return record(USER, {"role": "assistant", "tool_calls": [call(name, args)]})


# Each bad line, and what its error says.
BAD_LINES: dict[str, tuple[bytes, str]] = {
    "malformed JSON": (b"{oops", "not valid JSON"),
    "truncated line": (GOOD[: len(GOOD) // 2], "not valid JSON"),
    "a JSON list": (b"[1, 2]", "expected an object with 'messages'"),
    "a JSON string": (b'"hello"', "expected an object with 'messages'"),
    "JSON null": (b"null", "expected an object with 'messages'"),
    "no messages key": (json.dumps({"prompt": "x", "completion": "y"}).encode(), "expected an object with 'messages'"),
    "empty messages": (record(), "'messages' must be a non-empty list"),
    "messages not a list": (json.dumps({"messages": "hi"}).encode(), "'messages' must be a non-empty list"),
    "unknown role": (record({"role": "robot", "content": "x"}), "unknown role 'robot'"),
    "message not an object": (json.dumps({"messages": ["hi"]}).encode(), "a message must be an object"),
    "image content": (record({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                             {"role": "assistant", "content": "A cat."}), "unsupported content part"),
    "user with tool_calls": (record({"role": "user", "content": "x", "tool_calls": [call("add", {"a": 1, "b": 2})]}),
                             "only assistant messages have tool_calls"),
    "unknown tool": (calling("fly", {"to": "Paris"}), "unknown tool 'fly'"),
    "markup in a tool name": (calling("[/red]", {}), "unknown tool '[/red]'"),
    "wrong argument type": (calling("add", {"a": "three", "b": 4}), "arguments do not fit the schema"),
    "missing argument": (calling("add", {"a": 3}), "arguments do not fit the schema"),
    "arguments not JSON": (calling("add", "{a: 3, b: 4}"), "are not valid JSON"),
    "arguments not an object": (calling("add", "[3, 4]"), "must be a JSON object"),
    "call without a name": (record(USER, {"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}),
                            "a tool call needs function.name"),
    "no assistant turn": (record(USER), "no assistant turn"),
    "invalid UTF-8": (b'{"messages": [{"role": "user", "content": "caf\xe9"}]}', "not valid JSON"),
    "binary garbage": (bytes(range(256)).replace(b"\n", b""), "not valid JSON"),
    "5000-digit number": (b'{"messages": ' + b"7" * 5000 + b"}", "not valid JSON"),
    "nested 100,000 deep": (b"[" * 100_000, "not valid JSON (nested too deeply)"),
    "5000-digit argument": (calling("add", '{"a": ' + "7" * 5000 + ', "b": 1}'), "are not valid JSON"),
    "arguments nested 100,000 deep": (calling("add", "[" * 100_000), "are not valid JSON (nested too deeply)"),
}


def write(tmp_path: Path, lines: list[bytes], name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def check_one_line(message: str, path: Path, line: int) -> None:
    assert message.startswith(f"{path}:{line}: "), message[:300]
    assert "\n" not in message and "\r" not in message
    assert len(message) < 400 + len(str(path))


@pytest.mark.parametrize("case", BAD_LINES)
def test_a_bad_line_is_a_one_line_error_naming_file_and_line(tmp_path, small_toolset, case):
    bad, says = BAD_LINES[case]
    path = write(tmp_path, [GOOD, GOOD_TEXT, bad, GOOD])
    with pytest.raises(DataError, match=re.escape(says)) as info:
        load_jsonl(path, small_toolset)
    check_one_line(str(info.value), path, 3)
    assert (info.value.path, info.value.line) == (str(path), 3)


def test_lenient_loading_skips_every_bad_line_and_counts_it(tmp_path, small_toolset):
    lines, good_numbers = [], []
    for bad, _ in BAD_LINES.values():
        lines += [GOOD, bad]
        good_numbers.append(len(lines) - 1)
    path = write(tmp_path, lines)
    report = load_jsonl(path, small_toolset, lenient=True)
    assert len(report.conversations) == len(BAD_LINES) and report.skipped == len(BAD_LINES)
    assert len(report.conversations) + report.skipped == report.lines == len(lines)
    assert [c.source for c in report.conversations] == [f"{path}:{n}" for n in good_numbers]
    for k, error in enumerate(report.first_errors):
        check_one_line(error, path, 2 * (k + 1))


def test_blank_lines_and_windows_line_endings_are_not_errors(tmp_path, small_toolset):
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD + b"\r\n\r\n   \r\n" + GOOD_TEXT + b"\r\n")  # with a UTF-8 BOM
    report = load_jsonl(path, small_toolset)
    assert len(report.conversations) == 2 and report.skipped == 0 and report.lines == 2
    assert report.conversations[1].source == f"{path}:4"


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"\xef\xbb\xbf"])
def test_an_empty_file_is_a_clear_error(tmp_path, small_toolset, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match="no usable conversations .the file is empty.") as info:
        load_jsonl(path, small_toolset, lenient=True)
    assert str(info.value).startswith(f"{path}: ")


def test_a_file_of_only_bad_lines_is_an_error_that_counts_them(tmp_path, small_toolset):
    path = write(tmp_path, [b"{oops"] * 7)
    with pytest.raises(DataError, match=r"no usable conversations \(7 bad lines skipped; first: .*:1: not valid JSON"):
        load_jsonl(path, small_toolset, lenient=True)


def test_a_directory_is_a_clear_error(tmp_path, small_toolset):
    with pytest.raises(DataError, match="is a directory"):
        load_jsonl(tmp_path, small_toolset)


# -- size ------------------------------------------------------------------------------
def test_a_20000_line_file_streams_and_names_the_one_bad_line(tmp_path, small_toolset):
    lines = [GOOD if i % 2 else GOOD_TEXT for i in range(20_000)]
    lines[17_344] = calling("add", {"a": "x", "b": 1})
    path = write(tmp_path, lines)
    start = time.perf_counter()
    with pytest.raises(DataError, match="arguments do not fit") as info:
        load_jsonl(path, small_toolset)
    check_one_line(str(info.value), path, 17_345)
    for n in range(0, 20_000, 20):  # 1,000 bad lines spread over the file
        lines[n] = b"{oops"
    report = load_jsonl(write(tmp_path, lines, "many.jsonl"), small_toolset, lenient=True)
    assert report.skipped == 1_001 and len(report.conversations) == 18_999
    assert len(report.conversations) + report.skipped == report.lines == 20_000
    assert time.perf_counter() - start < 30


def test_a_line_over_the_size_limit_is_refused_and_the_rest_still_loads(tmp_path, small_toolset):
    huge = b'{"messages": [{"role": "user", "content": "' + b"x" * (data_module.MAX_LINE_BYTES + 1) + b'"}]}'
    path = write(tmp_path, [GOOD, huge, GOOD_TEXT])
    with pytest.raises(DataError, match=rf"line of {len(huge) + 1:,} bytes is over the limit of 8,388,608 bytes") as info:
        load_jsonl(path, small_toolset)
    check_one_line(str(info.value), path, 2)
    report = load_jsonl(path, small_toolset, lenient=True)
    assert report.skipped == 1 and [c.source for c in report.conversations] == [f"{path}:1", f"{path}:3"]


def test_a_huge_line_is_never_held_in_memory_whole(tmp_path, small_toolset, monkeypatch):
    monkeypatch.setattr(data_module, "MAX_LINE_BYTES", 64 << 10)
    path = tmp_path / "one-line.jsonl"
    with open(path, "wb") as f:  # 32 MiB without a newline, then a good line
        f.write(b'{"messages": "')
        for _ in range(32):
            f.write(b"y" * (1 << 20))
        f.write(b'"}\n' + GOOD + b"\n")
    tracemalloc.start()
    try:
        report = load_jsonl(path, small_toolset, lenient=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.skipped == 1 and len(report.conversations) == 1 and report.lines == 2
    assert f"line of {(32 << 20) + 17:,} bytes is over the limit of 65,536 bytes" in report.first_errors[0]
    assert peak < 8 << 20, f"peak {peak >> 20} MiB while reading a 32 MiB line"


# -- the command line ------------------------------------------------------------------
runner = CliRunner()


@pytest.fixture()
def tools_file(tmp_path) -> Path:
    path = tmp_path / "mytools.py"
    path.write_text(TOOLS)
    return path


@pytest.mark.parametrize("case", BAD_LINES)
def test_train_with_a_bad_line_exits_2_with_one_line(tmp_path, tools_file, case):
    bad, says = BAD_LINES[case]
    path = write(tmp_path, [GOOD, bad], "bad.jsonl")
    result = runner.invoke(app, ["train", "--tools", str(tools_file), "--data", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bad.jsonl:2: " in errors[0] and says in errors[0]
    assert result.output.rstrip().endswith(errors[0])  # nothing after the error line
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_train_with_an_empty_file_exits_2(tmp_path, tools_file):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    result = runner.invoke(app, ["train", "--tools", str(tools_file), "--data", str(path)])
    assert result.exit_code == 2 and "the file is empty" in result.output


def test_lenient_train_reports_the_skipped_lines_and_trains_on_the_rest(tmp_path, tools_file, tiny_model_dir):
    lines = [GOOD, GOOD_TEXT] * 6 + [bad for bad, _ in BAD_LINES.values()]
    path = write(tmp_path, lines, "mixed.jsonl")
    out = tmp_path / "ckpt"
    result = runner.invoke(app, ["train", "--tools", str(tools_file), "--data", str(path), "--model", str(tiny_model_dir),
                                 "--out", str(out), "--epochs", "1", "--dtype", "float32", "--lenient"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"skipped {len(BAD_LINES)} bad lines of {len(lines)}" in text and "mixed.jsonl:13: not valid JSON" in text
    assert "data: 12 conversations" in text and (out / "toolken_config.json").is_file()


def test_the_installed_command_prints_no_traceback(tmp_path, tools_file):
    """A real process: stderr is the toolset line and one error line, exit code 2."""
    path = write(tmp_path, [GOOD, BAD_LINES["nested 100,000 deep"][0]], "deep.jsonl")
    done = subprocess.run([sys.executable, "-m", "toolken_agent.cli", "train", "--tools", str(tools_file),
                           "--data", str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "deep.jsonl:2: not valid JSON (nested too deeply)" in last
