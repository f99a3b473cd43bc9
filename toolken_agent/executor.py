"""Running a tool on the user's machine, from arguments a model wrote.

Arguments are data: they are validated against the tool's schema and passed as keyword
values, never evaluated. A tool that raises, runs past its timeout, or returns
something that cannot be shown as text gives an error *result*, which goes back to the
model (and to LangChain as a ``ToolMessage`` with ``status="error"``); the process
never dies of a tool.
"""

from __future__ import annotations

import concurrent.futures
import json
from dataclasses import dataclass
from typing import Any, Mapping

from .tool import ArgumentsError, ToolSpec
from .toolset import Toolset

DEFAULT_TIMEOUT = 30.0
MAX_RESULT_CHARS = 20_000

# Tool calls that time out keep running in their thread (Python cannot kill a thread);
# a shared pool with spare workers keeps them from blocking later calls.
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="toolken-tool")


@dataclass(frozen=True)
class ToolOutcome:
    content: str
    is_error: bool = False
    value: Any = None


def result_text(value: Any) -> str:
    """A tool's return value as the text the model reads."""
    if isinstance(value, str):
        text = value
    elif value is None or isinstance(value, (bool, int, float, list, dict, tuple)):
        text = json.dumps(value, ensure_ascii=False)
    elif hasattr(value, "content") and isinstance(getattr(value, "content"), str):  # a LangChain ToolMessage
        text = value.content
    else:
        raise TypeError(f"returned a {type(value).__name__}, which is not text, a number, or JSON data")
    return text if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS] + " ...[truncated]"


def run_tool(spec: ToolSpec, args: Mapping[str, Any], *, timeout: float | None = DEFAULT_TIMEOUT) -> ToolOutcome:
    """Validate ``args`` and run ``spec``; every failure becomes an error outcome."""
    if spec.func is None:
        return ToolOutcome(f"Error: {spec.name} has no implementation to run", True)
    try:
        kwargs = spec.validate(args)
    except ArgumentsError as exc:
        return ToolOutcome(f"Error: invalid arguments: {exc}", True)
    future = _POOL.submit(spec.func, **kwargs)
    try:
        value = future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        return ToolOutcome(f"Error: {spec.name} did not finish within {timeout:g} s", True)
    except Exception as exc:  # the tool's own failure is the model's information
        return ToolOutcome(f"Error: {type(exc).__name__}: {exc}", True)
    try:
        return ToolOutcome(result_text(value), False, value)
    except (TypeError, ValueError) as exc:
        return ToolOutcome(f"Error: {spec.name} {exc}", True)


def run_call(toolset: Toolset, name: str, args: Mapping[str, Any], *,
             timeout: float | None = DEFAULT_TIMEOUT) -> ToolOutcome:
    """Run the tool called ``name`` in ``toolset``: the only tools a model can reach.

    A name the toolset does not hold is refused with an error outcome. It is never
    looked up anywhere else (a module, builtins, the shell), so a model or a crafted
    message cannot reach a function that was not registered as a tool.
    """
    if name not in toolset.names:
        return ToolOutcome(f"Error: no tool named {name!r} (the tools are: {', '.join(toolset.names)})", True)
    return run_tool(toolset.get(name), args, timeout=timeout)
