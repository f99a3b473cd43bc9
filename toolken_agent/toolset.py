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


def make_toolset(tools: Iterable[Any], source: str = "") -> Toolset:
    """Convert tool definitions and check the set: non-empty, unique names."""
    specs = tuple(to_spec(t) for t in tools)
    if not specs:
        raise ToolsetError(f"{source or 'toolset'}: no tools found")
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ToolsetError(f"{source or 'toolset'}: duplicate tool name {spec.name!r}")
        seen.add(spec.name)
    return Toolset(specs, source)


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
        try:
            loaded = registry[ref].load()
        except Exception as exc:
            raise ToolsetError(f"cannot load registered toolset {ref!r}: {exc}") from None
        return make_toolset(_tools_from_object(loaded), ref)
    try:
        module = importlib.import_module(ref)
    except ModuleNotFoundError as exc:
        if exc.name and ref.startswith(exc.name):
            known = ", ".join(sorted(registry)) or "none"
            raise ToolsetError(
                f"no toolset {ref!r}: not a file, a registered toolset ({known}), or an importable module"
            ) from None
        raise ToolsetError(f"cannot import {ref}: {exc}") from None
    except Exception as exc:
        raise ToolsetError(f"cannot import {ref}: {type(exc).__name__}: {exc}") from None
    return make_toolset(discover(module), ref)


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
    except Exception as exc:
        del sys.modules[name]
        raise ToolsetError(f"cannot import {path}: {type(exc).__name__}: {exc}") from None
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
