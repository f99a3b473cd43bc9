"""The chat REPL: tool calls shown as they happen, history kept across turns, commands."""

from __future__ import annotations

import builtins
import io
import textwrap

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from toolken_agent.conversation import Message, ToolCall
from toolken_agent.decoding import CallFinished, DecodeConfig, Decoder, Finished, TextChunk, ToolResult
from toolken_agent.repl import Transcript, chat_command, chat_loop, prompt_lines
from toolken_agent.tool import Tool
from toolken_agent.toolkens import Toolkens
from toolken_agent.toolset import make_toolset

CONFIG = DecodeConfig(max_new_tokens=5, max_calls=1)
# The random tiny model writes digits until the argument budget runs out; keep it short.
SHORT = DecodeConfig(max_new_tokens=5, max_calls=1, max_argument_tokens=8)


class Ping(Tool):
    """Check that the service answers."""

    def run(self) -> str:
        return "pong"


class Explode(Tool):
    """A tool that always fails."""

    def run(self) -> str:
        raise RuntimeError("kaboom")


def console() -> Console:
    return Console(file=io.StringIO(), width=120)


def forced(lm, toolset, index: int = 0) -> Decoder:
    """A decoder whose toolken ``index`` always wins the first decision."""
    toolkens = Toolkens.from_priors(lm, toolset, prior="random")
    toolkens.head.bias.data[index] = 1e4
    return Decoder(toolkens)


def test_piped_lines_show_the_tool_call_and_its_result(tiny_lm, small_toolset):
    con = console()
    chat_loop(forced(tiny_lm, small_toolset), ["What is 3 plus 4?"], con, SHORT, toolset=small_toolset)
    lines = con.file.getvalue().splitlines()
    call = next(i for i, line in enumerate(lines) if line.startswith("→ add("))
    assert lines[call + 1].startswith(("← ", "✗ "))


def test_a_successful_call_shows_arguments_and_result(tiny_lm):
    toolset = make_toolset([Ping, Explode], "test")
    con = console()
    chat_loop(forced(tiny_lm, toolset, 0), ["Are you there?"], con, CONFIG, toolset=toolset)
    output = con.file.getvalue()
    assert "→ ping({})" in output and "← pong" in output


def test_history_mirrors_the_decoders_hops(tiny_lm):
    toolset = make_toolset([Ping, Explode], "test")
    history = chat_loop(forced(tiny_lm, toolset, 0), ["Are you there?"], console(), CONFIG, toolset=toolset)
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]
    call = history[1].tool_calls[0]
    assert call.name == "ping" and history[2].tool_call_id == call.id and history[2].content == "pong"


def test_history_carries_over_to_the_next_turn(tiny_lm):
    toolset = make_toolset([Ping, Explode], "test")
    decoder = forced(tiny_lm, toolset, 0)
    seen: list[list[Message]] = []
    original = decoder.stream

    def spy(messages, config, **kw):
        seen.append(list(messages))
        return original(messages, config, **kw)

    decoder.stream = spy  # type: ignore[method-assign]
    chat_loop(decoder, ["first", "second"], console(), CONFIG, toolset=toolset)
    assert [m.role for m in seen[1]] == ["user", "assistant", "tool", "assistant", "user"]
    assert seen[1][2].content == "pong"


def test_a_failing_tool_shows_an_error_and_the_loop_continues(tiny_lm):
    toolset = make_toolset([Ping, Explode], "test")
    con = console()
    history = chat_loop(forced(tiny_lm, toolset, 1), ["boom?", "again?"], con, CONFIG, toolset=toolset)
    output = con.file.getvalue()
    assert output.count("✗ Error: RuntimeError: kaboom") == 2
    assert [m.content for m in history if m.role == "user"] == ["boom?", "again?"]


def test_reset_clears_the_history(tiny_lm, small_toolset):
    con = console()
    history = chat_loop(forced(tiny_lm, small_toolset), ["hello", "/reset", "hi"], con, SHORT, toolset=small_toolset)
    assert [m.content for m in history if m.role == "user"] == ["hi"]
    assert "(history cleared)" in con.file.getvalue()


def test_tools_command_lists_names_and_descriptions(small_toolset):
    con = console()
    history = chat_loop(None, ["/tools"], con, CONFIG, toolset=small_toolset)  # type: ignore[arg-type]
    output = con.file.getvalue()
    assert "add" in output and "weather_now" in output and "Get the current weather for a city." in output
    assert history == []


def test_help_and_unknown_commands_do_not_reach_the_model(small_toolset):
    class NoModel:
        def stream(self, *a, **kw):
            raise AssertionError("the model was called")

    con = console()
    chat_loop(NoModel(), ["/help", "/frobnicate", "   "], con, CONFIG, toolset=small_toolset)
    output = con.file.getvalue()
    assert "/reset" in output and "/quit" in output and "unknown command /frobnicate" in output


def test_quit_stops_reading_further_lines(small_toolset):
    lines = iter(["/quit", "never read"])
    assert chat_loop(None, lines, console(), CONFIG, toolset=small_toolset) == []  # type: ignore[arg-type]
    assert next(lines) == "never read"


class Interrupted:
    """A decoder whose reply is cut by Ctrl-C after some text; records that it was closed."""

    def __init__(self) -> None:
        self.closed = False
        self.calls = 0

    def stream(self, messages, config, *, run_tools=False):
        self.calls += 1
        try:
            yield TextChunk("Partial")
            raise KeyboardInterrupt
        finally:
            self.closed = True


def test_ctrl_c_interrupts_the_reply_only(small_toolset):
    decoder, con = Interrupted(), console()
    history = chat_loop(decoder, ["one", "two"], con, CONFIG, toolset=small_toolset)
    assert con.file.getvalue().count("(interrupted)") == 2 and decoder.calls == 2 and decoder.closed
    assert [(m.role, m.content) for m in history] == [("user", "one"), ("assistant", "Partial"),
                                                      ("user", "two"), ("assistant", "Partial")]


def test_an_interrupted_reply_keeps_no_call_without_its_result():
    a, b = ToolCall("add", {"a": 1, "b": 2}, "c1"), ToolCall("add", {"a": 3, "b": 4}, "c2")
    transcript = Transcript()
    for event in (CallFinished(0, a), CallFinished(1, b), ToolResult(a, "3", False)):
        transcript.add(event)
    kept = transcript.interrupted()
    assert kept[0].tool_calls == (a,) and kept[1].tool_call_id == "c1" and len(kept) == 2


def test_a_finished_reply_adds_the_messages_the_decoder_built_after_the_history(small_toolset):
    call = ToolCall("add", {"a": 1, "b": 2}, "c1")
    built = (Message("user", "1+2?"), Message("assistant", "", tool_calls=(call,)),
             Message("tool", "3", tool_call_id="c1", name="add"), Message("assistant", "It is 3."))

    class OneReply:
        def stream(self, messages, config=None, *, run_tools=True):
            yield CallFinished(0, call)
            yield ToolResult(call, "3", False)
            yield TextChunk("It is 3.")
            yield Finished("stop", 10, 4, built)

    history = chat_loop(OneReply(), ["1+2?"], console(), CONFIG, toolset=small_toolset)
    assert history == list(built)


@pytest.mark.parametrize("exc", [EOFError, KeyboardInterrupt])
def test_ctrl_d_or_ctrl_c_at_the_prompt_ends_the_session(monkeypatch, exc):
    answers = iter(["hello"])

    def fake_input(*_):
        try:
            return next(answers)
        except StopIteration:
            raise exc from None

    monkeypatch.setattr(builtins, "input", fake_input)
    con = console()
    assert list(prompt_lines(con)) == ["hello"]
    assert "you> " in con.file.getvalue()


# -- the command --------------------------------------------------------------------------
TOOLS = textwrap.dedent('''
    from toolken_agent.tool import Tool

    class Ping(Tool):
        """Check that the service answers."""

        def run(self) -> str:
            return "pong"
''')


@pytest.fixture()
def chat_app() -> typer.Typer:
    app = typer.Typer()
    app.command("chat")(chat_command)

    @app.callback()
    def main() -> None:
        """Keep `chat` a subcommand, as in the real CLI."""

    return app


def test_chat_command_answers_piped_input(chat_app, tiny_model_dir, tmp_path):
    tools = tmp_path / "pingtools.py"
    tools.write_text(TOOLS)
    result = CliRunner().invoke(chat_app, ["chat", "--model", str(tiny_model_dir), "--tools", str(tools),
                                           "--max-tokens", "5", "--dtype", "float32"], input="Hello\n")
    assert result.exit_code == 0, result.output


def test_chat_command_without_tools_or_toolkens_is_a_one_line_error(chat_app):
    result = CliRunner().invoke(chat_app, ["chat"], input="Hello\n")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--tools" in lines[0] and "--toolkens" in lines[0]


# -- confirming tools that act -----------------------------------------------------------
class Send(Tool):
    """Send an email to someone."""

    read_only = False

    def run(self, to: str) -> str:
        return "sent"


class Look(Tool):
    """Look up a word in the dictionary."""

    read_only = True

    def run(self, word: str) -> str:
        return "a word"


class Asks:
    """A decoder that, as Decoder.stream does, asks ``confirm`` before running each call's tool."""

    def __init__(self, toolset, calls: list[ToolCall]) -> None:
        self.toolset, self.calls, self.answers = toolset, calls, []

    def stream(self, messages, config=None, *, run_tools=True, confirm=None):
        for index, call in enumerate(self.calls):
            yield CallFinished(index, call)
            allowed = confirm is None or confirm(call, self.toolset.get(call.name))
            self.answers.append(allowed)
            yield ToolResult(call, "done" if allowed else "Error: declined", not allowed)
        yield Finished("stop", 1, 1, tuple(messages))


@pytest.fixture()
def acting():
    toolset = make_toolset([Send, Look, Ping], "test")
    calls = [ToolCall("send", {"to": "bob"}, "c1"), ToolCall("look", {"word": "hi"}, "c2"), ToolCall("ping", {}, "c3")]
    return toolset, calls


def test_piped_chat_declines_tools_that_may_act_and_says_yes_allows_them(acting):
    from toolken_agent.repl import confirmer

    toolset, calls = acting
    decoder, con = Asks(toolset, calls), console()
    chat_loop(decoder, ["mail bob"], con, CONFIG, toolset=toolset, confirm=confirmer(con, interactive=False, yes=False))
    assert decoder.answers == [False, True, False]  # read-only runs; declared acting and undeclared are declined
    assert "(not running send: it may act, and piped input cannot confirm it; --yes allows it)" in con.file.getvalue()


def test_yes_runs_every_tool_without_asking(acting):
    from toolken_agent.repl import confirmer

    toolset, calls = acting
    decoder, con = Asks(toolset, calls), console()
    chat_loop(decoder, ["mail bob"], con, CONFIG, toolset=toolset, confirm=confirmer(con, interactive=False, yes=True))
    assert decoder.answers == [True, True, True] and "not running" not in con.file.getvalue()


@pytest.mark.parametrize("typed, runs", [("y", True), ("yes", True), ("", False), ("n", False), ("[/x]", False)])
def test_a_terminal_asks_before_a_tool_that_may_act(acting, monkeypatch, typed, runs):
    from toolken_agent.repl import confirmer

    toolset, calls = acting
    asked: list[str] = []
    monkeypatch.setattr(builtins, "input", lambda prompt="": asked.append(prompt) or typed)
    decoder, con = Asks(toolset, calls[:2]), console()
    chat_loop(decoder, ["mail bob"], con, CONFIG, toolset=toolset, confirm=confirmer(con, interactive=True, yes=False))
    assert decoder.answers == [runs, True]
    assert 'Run send({"to":"bob"})? [y/N]' in con.file.getvalue()  # asked once: the read-only tool was not


def test_the_chat_command_hands_its_confirm_question_to_the_decoder(chat_app, tiny_model_dir, tmp_path, monkeypatch):
    import toolken_agent.decoding as decoding

    seen = {}

    class Recording:
        def __init__(self, toolkens):
            pass

        def stream(self, messages, config=None, *, run_tools=True, confirm=None):
            seen["confirm"] = confirm
            yield Finished("stop", 1, 1, tuple(messages))

    monkeypatch.setattr(decoding, "Decoder", Recording)
    tools = tmp_path / "pingtools.py"
    tools.write_text(TOOLS)
    result = CliRunner().invoke(chat_app, ["chat", "--model", str(tiny_model_dir), "--tools", str(tools), "--dtype", "float32"],
                                input="Hello\n")
    assert result.exit_code == 0, result.output
    ping = make_toolset([Ping], "test").specs[0]
    assert seen["confirm"](ToolCall("ping", {}), ping) is False  # piped, undeclared: declined without --yes


def test_chat_with_a_checkpoint_and_no_tools_is_a_one_line_error(chat_app, tiny_lm, small_toolset, tmp_path):
    path = Toolkens.from_priors(tiny_lm, small_toolset, prior="lm-head").save(tmp_path / "ckpt")
    result = CliRunner().invoke(chat_app, ["chat", "--toolkens", str(path)], input="Hello\n")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pass --tools with the toolset" in lines[0]
