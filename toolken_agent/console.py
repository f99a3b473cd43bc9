"""What the command line's commands share: the consoles, one-line errors, common options.

``cli`` (train, eval, tools) and ``repl`` (chat) both build on this module, and neither
imports the other's internals: ``cli`` registers ``repl``'s command.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Iterator, Optional, TextIO

import typer
from rich.console import Console
from rich.markup import escape

from .errors import ToolkenError

out = Console()
err = Console(stderr=True)

ToolsOption = Annotated[str, typer.Option("--tools", "-t", help="A .py file, a module path, or a registered toolset name (e.g. math).")]
ModelOption = Annotated[Optional[str], typer.Option("--model", "-m", help="HF model id, local directory or .gguf file (default: embedded SmolLM2-135M-Instruct).")]
DtypeOption = Annotated[str, typer.Option("--dtype", help="auto (bf16 where the CPU has it), float32 or bfloat16.")]
TrustOption = Annotated[bool, typer.Option("--trust-toolset", help="Without --tools: use the toolset the checkpoint names if it is a registered toolset name (a file or module it names is never imported).")]


@contextlib.contextmanager
def user_errors(interrupted: str = "interrupted") -> Iterator[None]:
    """Turn user-facing errors and Ctrl-C into one line and an exit code; ``interrupted`` is the Ctrl-C line."""
    try:
        yield
    except ToolkenError as exc:
        # Escaped: the message quotes user data, where "[/x]" would be read as markup and raise.
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print(interrupted, highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(130) from None


@contextlib.contextmanager
def tool_prints_to_stderr() -> Iterator[TextIO]:
    """Send what tools print to stderr while they may run; yields the real stdout.

    A tool that printed (at import, or when run for its examples or an evaluation)
    wrote onto stdout, in front of the JSON line scripts read there.
    """
    stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        yield stdout



def load_trained(toolkens_dir: Path, tools_ref: str | None, *, trust_toolset: bool, model: str | None, dtype: str):
    """A trained checkpoint with the tools the user names: a checkpoint never chooses code to run.

    ``chat`` and ``eval`` used to import the toolset recorded in the checkpoint, and a
    ``.py`` path there ran whatever file sat at it, one shipped with a download included.
    """
    from .checkpoint import load_checkpoint
    from .toolkens import Toolkens
    from .toolset import load_toolset

    toolset = load_toolset(tools_ref) if tools_ref else None
    if toolset is None and not trust_toolset:
        _, config = load_checkpoint(toolkens_dir)
        recorded = f" ({config.toolset!r})" if config.toolset else ""
        raise ToolkenError(f"pass --tools with the toolset {toolkens_dir} was trained for{recorded}: a checkpoint holds "
                           "weights, and the toolset it records is never imported (--trust-toolset uses it if it is "
                           "a registered toolset name)")
    return Toolkens.load(toolkens_dir, toolset, model=model, dtype=dtype, trust_toolset=trust_toolset)
