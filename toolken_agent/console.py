"""What the command line's commands share: the consoles, one-line errors, common options.

``cli`` (train, eval, tools) and ``repl`` (chat) both build on this module, and neither
imports the other's internals: ``cli`` registers ``repl``'s command.
"""

from __future__ import annotations

import contextlib
import sys
from enum import Enum
from typing import Annotated, Any, Iterator, Optional, TextIO

import typer
from rich.console import Console
from rich.markup import escape

from .errors import ToolkenError

out = Console()
err = Console(stderr=True)

ToolsOption = Annotated[str, typer.Option("--tools", "-t", help="A .py file, a module path, or a registered toolset name (e.g. math).")]
ModelOption = Annotated[Optional[str], typer.Option("--model", "-m", help="HF model id, local directory or .gguf file (default: a checkpoint's recorded base model, else the embedded SmolLM2-135M-Instruct).")]
# Member names equal their values, so a member is also the plain string model.parse_dtype reads.
Dtype = Enum("Dtype", {name: name for name in ("auto", "float32", "bfloat16")}, type=str)
DtypeOption = Annotated[Dtype, typer.Option("--dtype", help="auto (bf16 where the CPU has it), float32 or bfloat16.")]
Engine = Enum("Engine", {name: name for name in ("auto", "transformers", "llamacpp")}, type=str)
EngineOption = Annotated[Optional[Engine], typer.Option("--engine", help="What decodes: llamacpp for a GGUF (needs the llamacpp extra), transformers, or auto (llama.cpp for a GGUF when it is installed; the default, or $TOOLKEN_AGENT_ENGINE).")]


def toolkens_option() -> Any:
    """``--toolkens``: a checkpoint directory or a Hub repo id (one OptionInfo per command that takes it)."""
    return typer.Option("--toolkens", "-k", help="A trained checkpoint: a directory from `toolken-agent train`, or a "
                        "Hugging Face Hub repo id (owner/name; read from the local HF cache when offline).")
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



def load_trained(toolkens_ref: str, tools_ref: str | None, *, trust_toolset: bool, model: str | None, dtype: str,
                 engine: str | None = None):
    """A trained checkpoint (a directory or a Hub repo id) with the tools the user names.

    A checkpoint never chooses code to run: ``chat`` and ``eval`` used to import the
    toolset recorded in it, and a ``.py`` path there ran whatever file sat at it, one
    shipped with a download included. Without ``model`` the checkpoint's own base model
    is loaded (:func:`toolken_agent.base_model.recorded_model`).
    """
    from .checkpoint import load_checkpoint
    from .hub import resolve_checkpoint
    from .toolkens import Toolkens
    from .toolset import load_toolset

    toolkens_dir = resolve_checkpoint(toolkens_ref)
    dtype = getattr(dtype, "value", dtype)
    toolset = load_toolset(tools_ref) if tools_ref else None
    if toolset is None and not trust_toolset:
        _, config = load_checkpoint(toolkens_dir)
        recorded = f" ({config.toolset!r})" if config.toolset else ""
        raise ToolkenError(f"pass --tools with the toolset {toolkens_ref} was trained for{recorded}: a checkpoint holds "
                           "weights, and the toolset it records is never imported (--trust-toolset uses it if it is "
                           "a registered toolset name)")
    return Toolkens.load(toolkens_dir, toolset, model=model, dtype=dtype, trust_toolset=trust_toolset,
                         engine=getattr(engine, "value", engine))
