"""Toolsets: an ordered, named collection of tools, and where to find one.

``--tools`` accepts a Python file, a module path, or a registered toolset name. Toolsets
are registered the way Python plugins are: an installed package declares one under
the entry-point group ``toolken_agent.toolsets`` (the built-in ``math`` is registered
the same way)::

    [project.entry-points."toolken_agent.toolsets"]
    weather = "my_package.tools:TOOLS"

Inside a file or module, the tools are its ``TOOLS`` list when it has one; otherwise
every :class:`~toolken_agent.tool.Tool` subclass defined there and every LangChain
tool object at module level, in definition order.

Loading a file or a module runs it, as ``python file.py`` would: that is the user's
choice on the command line, never a checkpoint's. A checkpoint may only name a
registered toolset, and even that is looked up only on request
(:func:`load_registered_toolset`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

import jsonschema
import pydantic

from .errors import ToolsetError
from .tool import Tool, ToolSpec, _is_langchain_tool, to_spec

ENTRY_POINT_GROUP = "toolken_agent.toolsets"


@dataclass(frozen=True)
class Toolset:
    """Tools in a fixed order: toolken ``k`` is ``specs[k]``."""

    specs: tuple[ToolSpec, ...]
    source: str = ""

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def index(self, name: str) -> int:
        return self.names.index(name)

    def get(self, name: str) -> ToolSpec:
        for spec in self.specs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def __len__(self) -> int:
        return len(self.specs)

    def __iter__(self):
        return iter(self.specs)


def as_toolset(tools: Any) -> Toolset:
    """``tools`` as a :class:`Toolset`: one already, a reference as ``--tools`` takes (:func:`load_toolset`), or tools."""
    if isinstance(tools, Toolset):
        return tools
    if isinstance(tools, (str, Path)):
        return load_toolset(str(tools))
    return make_toolset(tools)


def make_toolset(tools: Iterable[Any], source: str = "") -> Toolset:
    """Convert tool definitions and check the set: non-empty, unique names."""
    specs = tuple(checked_spec(t) for t in tools)
    if not specs:
        raise ToolsetError(f"{source or 'toolset'}: no tools found")
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ToolsetError(f"{source or 'toolset'}: duplicate tool name {spec.name!r}")
        seen.add(spec.name)
    return Toolset(specs, source)


def checked_spec(tool: Any) -> ToolSpec:
    """``to_spec(tool)`` with a schema that JSON Schema accepts, or a ToolsetError naming the tool.

    An argument typed ``Callable[[int], int]`` has no JSON schema (pydantic raised
    PydanticInvalidForJsonSchema), and a hand-written ``{"type": "foo"}`` was only
    rejected by jsonschema when the first call was validated.
    """
    try:
        spec = to_spec(tool)
    except pydantic.PydanticUserError as exc:  # PydanticInvalidForJsonSchema and the like
        reason = str(exc).strip().splitlines()[0]
        raise ToolsetError(f"tool {_tool_label(tool)}: its arguments have no JSON schema ({reason})") from None
    try:
        jsonschema.validators.validator_for(dict(spec.parameters)).check_schema(dict(spec.parameters))
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "top level"
        raise ToolsetError(f"tool {spec.name!r}: its argument schema is invalid at {where}: {exc.message}") from None
    return spec


def _tool_label(tool: Any) -> str:
    """The name a tool would have had, for an error about it."""
    if isinstance(tool, type) and issubclass(tool, Tool):
        return repr(tool.tool_name())
    name = getattr(tool, "name", None) if not isinstance(tool, type) else None
    name = name if isinstance(name, str) else getattr(tool, "__name__", None)
    return repr(name) if isinstance(name, str) else type(tool).__name__


def registered_toolsets() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def load_toolset(ref: str) -> Toolset:
    """Load the toolset named by ``ref``: a ``.py`` file, a registered name, or a module."""
    path = Path(ref).expanduser()
    if ref.endswith(".py") or path.is_file():
        if not path.is_file():
            raise ToolsetError(f"no such file: {ref}")
        return make_toolset(discover(_import_file(path)), str(path.resolve()))
    registry = registered_toolsets()
    if ref in registry:
        return _load_entry_point(registry[ref])
    try:
        module = importlib.import_module(ref)
    except ModuleNotFoundError as exc:
        if exc.name and ref.startswith(exc.name):
            known = ", ".join(sorted(registry)) or "none"
            raise ToolsetError(
                f"no toolset {ref!r}: not a file, a registered toolset ({known}), or an importable module"
            ) from None
        raise ToolsetError(f"cannot import {ref}: {exc}") from None
    except (Exception, SystemExit) as exc:
        raise ToolsetError(f"cannot import {ref}: {_failure(exc)}") from None
    return make_toolset(discover(module), ref)


def load_registered_toolset(name: str) -> Toolset:
    """The toolset registered under ``name`` (entry-point group ``toolken_agent.toolsets``), nothing else.

    For a name read from a checkpoint: files and module paths are never looked up, so
    a checkpoint cannot point at code shipped beside it.
    """
    registry = registered_toolsets()
    if name not in registry:
        known = ", ".join(sorted(registry)) or "none"
        raise ToolsetError(f"{name!r} is not a registered toolset (registered: {known}); pass the tools yourself")
    return _load_entry_point(registry[name])


def _load_entry_point(entry_point: importlib.metadata.EntryPoint) -> Toolset:
    try:
        loaded = entry_point.load()
    except (Exception, SystemExit) as exc:
        raise ToolsetError(f"cannot load registered toolset {entry_point.name!r}: {_failure(exc)}") from None
    return make_toolset(_tools_from_object(loaded), entry_point.name)


def _failure(exc: BaseException) -> str:
    """What an import raised, in words; ``sys.exit()`` at import time made the CLI exit 0 in silence."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


def _tools_from_object(obj: Any) -> list[Any]:
    if isinstance(obj, ModuleType):
        return discover(obj)
    if isinstance(obj, (list, tuple)):
        return list(obj)
    if callable(obj) and not isinstance(obj, type) and not _is_langchain_tool(obj):
        return list(obj())
    return [obj]


def _import_file(path: Path) -> ModuleType:
    name = f"toolken_agent_user_tools_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ToolsetError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)  # the user's own file, as `python file.py` would
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise ToolsetError(f"cannot import {path}: {_failure(exc)}") from None
    return module


def discover(module: ModuleType) -> list[Any]:
    """The tools a module offers: ``TOOLS`` if defined, else its tool classes and objects."""
    if hasattr(module, "TOOLS"):
        tools = module.TOOLS
        if not isinstance(tools, (list, tuple)):
            raise ToolsetError(f"{module.__name__}.TOOLS must be a list of tools")
        return list(tools)
    found = []
    for value in vars(module).values():
        if inspect.isclass(value) and issubclass(value, Tool) and value is not Tool:
            if value.__module__ == module.__name__ and not inspect.isabstract(value):
                found.append(value)
        elif _is_langchain_tool(value):
            found.append(value)
    return found
