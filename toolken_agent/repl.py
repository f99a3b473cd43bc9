"""``toolken-agent chat``: an interactive conversation in the terminal.

The loop is :func:`chat_loop`, a plain function over input lines and a rich console, so
tests drive it with a list of strings and a console writing to a string buffer. The
typer command :func:`chat_command` only builds the toolkens and chooses where the lines
come from: a ``you>`` prompt on a terminal, or one message per line when standard input
is piped (``echo "What is 37 times 91?" | toolken-agent chat --tools math``), and the
question asked before a tool that may act runs (:func:`confirmer`).
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Annotated, Iterable, Iterator, Optional, Protocol, Sequence

import typer
from rich.console import Console
from rich.markup import escape

from .chat_format import arguments_text
from .console import DtypeOption, EngineOption, ModelOption, TrustOption, err, load_trained, out, toolkens_option, user_errors
from .conversation import Message, ToolCall
from .events import ArgumentsChunk, CallFinished, Confirm, DecodeConfig, Event, Finished, TextChunk, ToolResult

if TYPE_CHECKING:  # tool.py loads pydantic and jsonschema; `--help` registers this command without them
    from .tool import ToolSpec
    from .toolset import Toolset


COMMANDS = {
    "/tools": "list the tools the model can call",
    "/reset": "forget the conversation so far",
    "/help": "show these commands",
    "/quit": "leave (Ctrl-D does the same)",
}
RESULT_PREVIEW = 500  # characters of a tool result shown; the model reads all of it


class Streams(Protocol):
    """What the loop needs of a :class:`~toolken_agent.decoding.Decoder` (tests pass fakes)."""

    def stream(self, messages: Sequence[Message], config: DecodeConfig = ..., *, run_tools: bool = ...,
               confirm: Confirm | None = ...) -> Iterator[Event]: ...


class Transcript:
    """What a reply has produced so far, kept for the case that Ctrl-C stops it.

    A finished reply needs none of this: its ``Finished`` event carries the whole
    conversation the decoder built (calls and results included). An interrupted one
    never gets there, so the messages of its finished hops are rebuilt from the events:
    per hop the decoder appends ``assistant(text, tool_calls)`` and one ``tool`` message
    per result.
    """

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.text: list[str] = []
        self.calls: list[ToolCall] = []

    def add(self, event: Event) -> None:
        if isinstance(event, TextChunk):
            self.text.append(event.text)
        elif isinstance(event, CallFinished):
            self.calls.append(event.call)
        elif isinstance(event, ToolResult):
            if self.calls:  # the first result of a hop closes its assistant turn
                self.messages.append(Message("assistant", "".join(self.text), tool_calls=tuple(self.calls)))
                self.text, self.calls = [], []
            self.messages.append(Message("tool", event.content, tool_call_id=event.call.id, name=event.call.name))

    def interrupted(self) -> list[Message]:
        """What survives Ctrl-C: finished hops and the partial text, never a call without its result."""
        kept = list(self.messages)
        answered = {m.tool_call_id for m in kept if m.role == "tool"}
        for i, message in enumerate(kept):
            if message.tool_calls and any(c.id not in answered for c in message.tool_calls):
                calls = tuple(c for c in message.tool_calls if c.id in answered)
                kept[i] = Message("assistant", message.content, tool_calls=calls)
        if self.text:  # unexecuted calls of the current hop are dropped
            kept.append(Message("assistant", "".join(self.text)))
        return kept


class Printer:
    """Shows events as they come: text streamed inline, each tool call on its own lines."""

    def __init__(self, console: Console):
        self.console = console
        self.mid_line = False  # streamed text not yet ended by a newline
        self.arguments: dict[int, str] = {}  # raw argument text per call index

    def newline(self) -> None:
        if self.mid_line:
            self.console.print()
            self.mid_line = False

    def show(self, event: Event) -> None:
        if isinstance(event, TextChunk):
            self.console.print(event.text, end="", markup=False, highlight=False, soft_wrap=True)
            self.mid_line = not event.text.endswith("\n")
        elif isinstance(event, ArgumentsChunk):
            self.arguments[event.index] = self.arguments.get(event.index, "") + event.text
        elif isinstance(event, CallFinished):
            self.newline()
            # On invalid arguments the call holds {}; show what the model actually wrote.
            args = arguments_text(dict(event.call.args)) if event.error is None else self.arguments.get(event.index, "")
            line = f"[cyan]→ {escape(event.call.name)}[/cyan]({escape(args)})"
            if event.error:
                line += f" [yellow]{escape(event.error)}[/yellow]"
            self.console.print(line, highlight=False, soft_wrap=True)
        elif isinstance(event, ToolResult):
            content = event.content if len(event.content) <= RESULT_PREVIEW else event.content[:RESULT_PREVIEW] + "…"
            style, mark = ("red", "✗") if event.is_error else ("green", "←")
            self.console.print(f"[{style}]{mark} {escape(content)}[/{style}]", highlight=False, soft_wrap=True)
        elif isinstance(event, Finished):
            self.newline()


def confirmer(console: Console, *, interactive: bool, yes: bool) -> Confirm:
    """The question asked before a tool that is not declared read-only runs.

    Read-only tools run without asking; ``yes`` (``--yes``) runs every tool. On a
    terminal the user answers ``Run name(args)? [y/N]``; piped input has nobody to ask,
    so such a tool is declined, with a line saying that ``--yes`` allows it.
    """
    def confirm(call: ToolCall, spec: ToolSpec) -> bool:
        if spec.read_only is True or yes:
            return True
        if not interactive:
            console.print(f"(not running {call.name}: it may act, and piped input cannot confirm it; --yes allows it)",
                          style="yellow", highlight=False, markup=False, soft_wrap=True)
            return False
        question = f"Run {call.name}({arguments_text(dict(call.args))})? [y/N] "
        try:
            answer = console.input(escape(question))
        except EOFError:
            return False
        return answer.strip().lower() in ("y", "yes")

    return confirm


def reply(decoder: Streams, history: list[Message], console: Console, config: DecodeConfig,
          confirm: Confirm | None = None) -> list[Message]:
    """Decode one reply to ``history``, showing it; return the messages it adds.

    Ctrl-C stops this reply only. The stream is closed explicitly so that the abandoned
    generator's request state (its KV cache) is released now rather than whenever it is
    garbage-collected. It holds no lock while suspended: ``Decoder._feed`` takes the
    model's lock for one forward pass at a time, so later requests never wait on it.
    """
    transcript, printer = Transcript(), Printer(console)
    events = decoder.stream(history, config, run_tools=True, **({"confirm": confirm} if confirm is not None else {}))
    try:
        for event in events:
            transcript.add(event)
            printer.show(event)
            if isinstance(event, Finished):
                return list(event.messages[len(history):])
    except KeyboardInterrupt:
        printer.newline()
        console.print("(interrupted)", style="dim", highlight=False)
        return transcript.interrupted()
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
    return transcript.interrupted()  # a stream that ended without Finished: keep what is whole


def chat_loop(decoder: Streams, lines: Iterable[str], console: Console, config: DecodeConfig, *,
              toolset: Toolset, history: list[Message] | None = None, confirm: Confirm | None = None) -> list[Message]:
    """Run a conversation over ``lines`` (messages and /commands); return the final history.

    ``confirm`` is passed to the decoder, which asks it before a tool that may act runs.
    """
    history = list(history or [])
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        command = line.split()[0].lower() if line.startswith("/") else None
        if command == "/quit":
            break
        if command == "/reset":
            history.clear()
            console.print("(history cleared)", style="dim", highlight=False)
        elif command == "/tools":
            for spec in toolset:
                summary = " ".join(spec.description.split())
                console.print(f"[bold]{escape(spec.name)}[/bold]  {escape(summary)}", highlight=False, soft_wrap=True)
        elif command == "/help":
            for name, text in COMMANDS.items():
                console.print(f"[bold]{name}[/bold]  {text}", highlight=False)
        elif command is not None:
            console.print(f"unknown command {escape(command)}; /help lists the commands", style="yellow", highlight=False)
        else:
            history.append(Message("user", line))
            history.extend(reply(decoder, history, console, config, confirm))
    return history


def prompt_lines(console: Console) -> Iterator[str]:
    """Lines typed at a ``you>`` prompt; Ctrl-D or Ctrl-C at the prompt ends the session."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (line editing and history for input())
    while True:
        try:
            line = console.input("[bold green]you>[/bold green] ")
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        yield line


def chat_command(
    tools: Annotated[Optional[str], typer.Option("--tools", "-t", help="A .py file, a module path, or a registered toolset name (e.g. math).")] = None,
    toolkens: Annotated[Optional[str], toolkens_option()] = None,
    trust_toolset: TrustOption = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Run every tool the model calls without asking (tools not declared read-only are otherwise confirmed on a terminal, and declined when input is piped).")] = False,
    model: ModelOption = None,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature; 0 is greedy.")] = 0.0,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Text tokens per assistant turn.")] = 256,
    dtype: DtypeOption = "auto",
    engine: EngineOption = None,
    call_threshold: Annotated[Optional[float], typer.Option("--call-threshold", min=0.0, max=1.0, help="Probability a call needs from a trained checkpoint's whether-to-call gate: lower calls more readily (default: the one chosen at training).")] = None,
) -> None:
    """Chat with the model; it calls tools through its toolkens. Reads one message per line when piped."""
    from .decoding import Decoder
    from .errors import ToolkenError
    from .model import load_model
    from .toolkens import Toolkens
    from .toolset import load_toolset

    with user_errors():
        if toolkens is not None:
            trained = load_trained(toolkens, tools, trust_toolset=trust_toolset, model=model, dtype=dtype, engine=engine)
        elif tools is not None:
            trained = Toolkens.bind(load_model(model, dtype=dtype, engine=getattr(engine, "value", engine)), load_toolset(tools))
            err.print("using untrained toolkens (priors only); train them with `toolken-agent train` for reliable calls",
                      style="dim", highlight=False)
        else:
            raise ToolkenError("pass --tools FILE_OR_MODULE (zero-shot) or --toolkens DIR (a trained checkpoint)")
        decoder = Decoder(trained)
    config = DecodeConfig(max_new_tokens=max_tokens, temperature=temperature, call_threshold=call_threshold)
    interactive = sys.stdin.isatty()
    if interactive:
        names = ", ".join(trained.toolset.names)
        out.print(f"[bold]{escape(trained.lm.name)}[/bold] with {len(trained.toolset)} tools ({escape(names)}); /help for commands",
                  highlight=False, soft_wrap=True)
        lines: Iterable[str] = prompt_lines(out)
    else:
        lines = sys.stdin
    confirm = confirmer(out, interactive=interactive, yes=yes)
    with user_errors():
        chat_loop(decoder, lines, out, config, toolset=trained.toolset, confirm=confirm)
