"""Finding toolsets in files, modules and registered entry points."""

from __future__ import annotations

import textwrap

import pytest

from toolken_agent.errors import ToolsetError
from toolken_agent.toolset import load_toolset, registered_toolsets


def write(tmp_path, text, name="mytools.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_file_discovery_finds_tool_classes_and_langchain_tools_in_order(tmp_path):
    path = write(tmp_path, '''
        from langchain_core.tools import tool
        from toolken_agent import Tool

        class Greet(Tool):
            """Greet a person by name."""
            def run(self, name: str) -> str:
                return "hi " + name

        @tool
        def shout(text: str) -> str:
            """Repeat text in capitals."""
            return text.upper()
    ''')
    toolset = load_toolset(str(path))
    assert toolset.names == ["greet", "shout"]


def test_tools_list_takes_precedence(tmp_path):
    path = write(tmp_path, '''
        from toolken_agent import Tool

        class Greet(Tool):
            """Greet a person by name."""
            def run(self, name: str) -> str:
                return "hi"

        def farewell(name: str) -> str:
            """Say goodbye to a person."""
            return "bye"

        TOOLS = [farewell]
    ''')
    assert load_toolset(str(path)).names == ["farewell"]


def test_builtin_math_is_registered_under_the_entry_point_group():
    assert "math" in registered_toolsets()
    toolset = load_toolset("math")
    assert toolset.names[:3] == ["add", "subtract", "multiply"]
    assert len(toolset) == 13


def test_module_path_works():
    assert len(load_toolset("toolken_agent.tools.math")) == 13


@pytest.mark.parametrize(
    "source, message",
    [
        ("x = 1\n", "no tools found"),
        ("def f(:\n", "cannot import"),
        ('from toolken_agent import Tool\nclass A(Tool):\n    """A."""\n    name = "a"\n    def run(self) -> int: return 1\n'
         'class B(Tool):\n    """B."""\n    name = "a"\n    def run(self) -> int: return 1\n', "duplicate tool name 'a'"),
        ('from toolken_agent import Tool\nclass A(Tool):\n    def run(self) -> int: return 1\n', "no description"),
        ("import sys\nsys.exit(0)\n", r"cannot import .*: it called sys.exit\(0\)"),  # made the CLI exit 0, silent
        ("raise SystemExit('bye')\n", r"it called sys.exit\('bye'\)"),
        ('from typing import Callable\nfrom toolken_agent import Tool\nclass Apply(Tool):\n    """Apply f."""\n'
         '    def run(self, f: Callable[[int], int]) -> int: return 1\n', "tool 'apply': its arguments have no JSON schema"),
        ('from toolken_agent.tool import ToolSpec\nTOOLS = [ToolSpec("odd", "Odd.", {"type": "object", "properties": '
         '{"a": {"type": "foo"}}})]\n', "tool 'odd': its argument schema is invalid at properties/a/type"),
    ],
)
def test_bad_toolset_files_are_clear_errors(tmp_path, source, message):
    path = write(tmp_path, source)
    with pytest.raises(ToolsetError, match=message):
        load_toolset(str(path))


def test_missing_file_and_unknown_name_are_clear_errors(tmp_path):
    with pytest.raises(ToolsetError, match="no such file"):
        load_toolset(str(tmp_path / "nope.py"))
    with pytest.raises(ToolsetError, match="registered toolset"):
        load_toolset("no_such_toolset_anywhere")


def test_a_registered_name_lookup_never_imports_a_file_or_a_module(tmp_path):
    from toolken_agent.toolset import load_registered_toolset

    path = write(tmp_path, "raise RuntimeError('imported')\n")
    for ref in (str(path), "toolken_agent.tools.math", "json"):
        with pytest.raises(ToolsetError, match="is not a registered toolset .registered: .*math"):
            load_registered_toolset(ref)
    assert load_registered_toolset("math").names == load_toolset("math").names
