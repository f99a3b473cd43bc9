"""Running a tool on the user's machine, from arguments a model wrote.

Arguments are data: they are validated against the tool's schema and passed as keyword
values, never evaluated. A tool that raises (``sys.exit()`` and ``KeyboardInterrupt``
included), runs past its timeout, or returns something that cannot be shown as text gives an error *result*,
which goes back to the model (and to LangChain as a ``ToolMessage`` with
``status="error"``, see :func:`toolken_agent.integrations.langchain.as_langchain_tool`);
the process never dies of a tool.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .defaults import TOOL_TIMEOUT as DEFAULT_TIMEOUT
from .tool import ArgumentsError, ToolSpec
from .toolset import Toolset

MAX_RESULT_CHARS = 20_000


@dataclass(frozen=True)
class ToolOutcome:
    content: str
    is_error: bool = False
    value: Any = None


class ToolAborted(Exception):
    """A tool raised ``KeyboardInterrupt`` or another ``BaseException`` itself.

    Its own failure, not the user's Ctrl-C (which arrives in the waiting thread): raised
    as such it escaped the executor and stopped the decoder.
    """

    def __init__(self, original: BaseException):
        super().__init__(f"{type(original).__name__}: {original}" if str(original) else type(original).__name__)


def result_text(value: Any) -> str:
    """A tool's return value as the text the model reads."""
    if isinstance(value, str):
        text = value
    elif value is None or isinstance(value, (bool, int, float, list, dict, tuple)):
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError) as exc:  # unserializable, circular, too deep
            raise TypeError(f"returned {type(value).__name__} data that is not JSON ({exc})") from None
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
    try:
        value = call_with_timeout(spec.func, kwargs, timeout)
    except concurrent.futures.TimeoutError:
        return ToolOutcome(f"Error: {spec.name} did not finish within {timeout:g} s", True)
    except ToolAborted as exc:
        return ToolOutcome(f"Error: {exc}", True)
    except (Exception, SystemExit) as exc:  # the tool's own failure is the model's information
        return ToolOutcome(f"Error: {type(exc).__name__}: {exc}", True)
    try:
        return ToolOutcome(result_text(value), False, value)
    except Exception as exc:  # not text or JSON data (or a result object that fails when read)
        return ToolOutcome(f"Error: {spec.name} {exc}", True)


def call_with_timeout(func: Callable[..., Any], kwargs: Mapping[str, Any], timeout: float | None) -> Any:
    """``func(**kwargs)`` in a daemon thread of its own; waits at most ``timeout`` seconds.

    A call that times out keeps running (Python cannot kill a thread). With a bounded
    pool, as many hung calls as it has workers left none for later calls, which then all
    timed out; and pool threads are joined at exit, so one hung tool kept the process
    from ending. A daemon thread per call costs little next to any tool and has neither
    problem.
    Raises ``concurrent.futures.TimeoutError``, or whatever the call raised (a
    ``BaseException`` other than ``SystemExit`` as :class:`ToolAborted`).
    """
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def target() -> None:
        future.set_running_or_notify_cancel()
        try:
            future.set_result(func(**kwargs))
        except (Exception, SystemExit) as exc:  # handed to the caller, which decides
            future.set_exception(exc)
        except BaseException as exc:  # KeyboardInterrupt from the tool itself, not from the user
            future.set_exception(ToolAborted(exc))

    threading.Thread(target=target, name="toolken-tool", daemon=True).start()
    return future.result(timeout=timeout)


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
