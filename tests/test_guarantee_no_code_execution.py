"""Guarantee: model output is data. It never reaches eval/exec, and tools run only
through the registry (the toolset) with arguments validated against their schema.

Every payload here would create a marker file if anything evaluated it; the tests
check that the tool receives the payload as a plain string and the file never appears.
A checkpoint is data too: loading one never imports the toolset it names (a ``.py``
file shipped inside a downloaded checkpoint used to run).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from toolken_agent.conversation import Message
from toolken_agent.decoding import CallFinished, Decoder, DecodeConfig, ToolResult
from toolken_agent.executor import run_call, run_tool
from toolken_agent.tool import ArgumentsError, Tool, ToolSpec, parse_arguments, to_spec
from toolken_agent.toolkens import Toolkens
from toolken_agent.toolset import make_toolset

ROOT = Path(__file__).resolve().parents[1]


def payloads(marker: Path) -> list[str]:
    """Strings that write ``marker`` when evaluated, executed or rendered as a template."""
    return [
        f"__import__('os').system('touch {marker}')",
        f"open('{marker}', 'w').write('pwned')",
        f"exec(\"open('{marker}', 'w')\")",
        f"eval(compile(\"open('{marker}', 'w')\", 'x', 'exec'))",
        f"{{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}}",  # Jinja, as chat templates are
    ]


class Recorder:
    """Tools that remember every call instead of doing anything."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def echo_spec(self) -> ToolSpec:
        calls = self.calls

        class Echo(Tool):
            """Repeat a piece of text back."""

            def run(self, text: str) -> str:
                calls.append({"text": text})
                return text

        return to_spec(Echo)

    def add_spec(self) -> ToolSpec:
        calls = self.calls

        class Add(Tool):
            """Add two numbers."""

            def run(self, a: float, b: float) -> float:
                calls.append({"a": a, "b": b})
                return a + b

        return to_spec(Add)

    def schema_spec(self, parameters: dict[str, Any], name: str = "run_code") -> ToolSpec:
        """A tool given as a bare JSON schema (as LangChain and OpenAI tools are)."""
        calls = self.calls

        def func(**kwargs: Any) -> str:
            calls.append(kwargs)
            return json.dumps(kwargs)

        return ToolSpec(name, "Run a piece of code.", parameters, func)


@pytest.fixture()
def marker(tmp_path) -> Path:
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a payload was executed"


# -- the executor ----------------------------------------------------------------------
def test_code_in_a_string_argument_reaches_the_tool_as_plain_text(marker):
    recorder = Recorder()
    spec = recorder.echo_spec()
    for payload in payloads(marker):
        outcome = run_tool(spec, {"text": payload})
        assert not outcome.is_error and outcome.content == payload
    assert recorder.calls == [{"text": p} for p in payloads(marker)]
    assert all(type(c["text"]) is str for c in recorder.calls)


@pytest.mark.parametrize("expression", ["2*3", "1+1", "__import__('math').pi", "float('inf')"])
def test_expressions_in_a_number_field_are_refused_not_computed(expression):
    recorder = Recorder()
    outcome = run_tool(recorder.add_spec(), {"a": expression, "b": 1})
    assert outcome.is_error and "invalid arguments" in outcome.content
    assert recorder.calls == []


BAD_ARGUMENTS = [
    {},  # missing required
    {"text": 5},
    {"text": None},
    {"text": ["a", "b"]},
    {"text": {"__class__": "os"}},
    {"txt": "misspelt key"},
    ["text"],
    "text",
    None,
    42,
]


@pytest.mark.parametrize("args", BAD_ARGUMENTS, ids=repr)
def test_arguments_failing_a_typed_schema_never_call_the_tool(args):
    recorder = Recorder()
    outcome = run_tool(recorder.echo_spec(), args)
    assert outcome.is_error and outcome.content.startswith("Error: invalid arguments")
    assert recorder.calls == []


@pytest.mark.parametrize("args", BAD_ARGUMENTS, ids=repr)
def test_arguments_failing_a_json_schema_never_call_the_tool(args):
    recorder = Recorder()
    spec = recorder.schema_spec({"type": "object", "properties": {"text": {"type": "string"}},
                                 "required": ["text"], "additionalProperties": False})
    outcome = run_tool(spec, args)
    assert outcome.is_error and outcome.content.startswith("Error: invalid arguments")
    assert recorder.calls == []


def forbidden(**kwargs: Any) -> str:
    """A module-level function with a tool-like name that is not registered."""
    raise AssertionError("an unregistered function was called")


@pytest.mark.parametrize("name", ["forbidden", "eval", "exec", "__import__", "os.system", "system", "Echo", "echo ", ""])
def test_a_tool_not_in_the_registry_is_refused(name, marker):
    recorder = Recorder()
    toolset = make_toolset([recorder.echo_spec()])
    outcome = run_call(toolset, name, {"text": payloads(marker)[0]})
    assert outcome.is_error and "no tool named" in outcome.content
    assert recorder.calls == []


def test_a_registered_tool_runs_through_the_registry(marker):
    recorder = Recorder()
    toolset = make_toolset([recorder.echo_spec()])
    outcome = run_call(toolset, "echo", {"text": payloads(marker)[0]})
    assert not outcome.is_error and recorder.calls == [{"text": payloads(marker)[0]}]


# -- model-written argument text -------------------------------------------------------
def test_argument_text_that_is_code_is_refused_not_evaluated(marker):
    spec = Recorder().echo_spec()
    for payload in payloads(marker):
        with pytest.raises(ArgumentsError, match="not valid JSON"):
            parse_arguments(spec, payload)


def test_argument_text_holding_code_in_a_string_parses_to_that_string(marker):
    spec = Recorder().echo_spec()
    for payload in payloads(marker):
        assert parse_arguments(spec, json.dumps({"text": payload})) == {"text": payload}


# -- end to end through the decoder ----------------------------------------------------
def forced_toolkens(lm, spec: ToolSpec) -> Toolkens:
    toolkens = Toolkens.from_priors(lm, make_toolset([spec]), prior="random")
    with torch.no_grad():
        toolkens.head.bias.fill_(-1e4)  # words win unless tool_choice forces the call
    return toolkens


def const_schema(payload: str) -> dict[str, Any]:
    """A schema whose only valid value is ``payload``: the model is made to write it."""
    return {"type": "object", "properties": {"code": {"type": "string", "const": payload}}, "required": ["code"]}


def test_a_decoded_call_passes_code_to_the_tool_as_a_string(tiny_lm, marker):
    for payload in payloads(marker):
        recorder = Recorder()
        decoder = Decoder(forced_toolkens(tiny_lm, recorder.schema_spec(const_schema(payload))))
        config = DecodeConfig(tool_choice="run_code", max_calls=1, max_new_tokens=2, max_argument_tokens=200)
        events = list(decoder.stream([Message("user", payload)], config, run_tools=True))
        (finished,) = [e for e in events if isinstance(e, CallFinished)]
        assert finished.error is None and json.loads(finished.raw_arguments) == {"code": payload}
        (result,) = [e for e in events if isinstance(e, ToolResult)]
        assert not result.is_error
        assert recorder.calls == [{"code": payload}]


def test_chat_toolken_returns_code_arguments_as_data(tiny_model_dir, marker):
    from langchain_core.messages import ToolMessage

    from toolken_agent import ChatToolken
    from toolken_agent.integrations.langchain import as_langchain_tool

    payload = payloads(marker)[0]
    recorder = Recorder()
    spec = recorder.schema_spec(const_schema(payload))
    llm = ChatToolken(model=str(tiny_model_dir), dtype="float32", max_tokens=4)
    message = llm.bind_tools([spec.to_openai()], tool_choice="run_code").invoke(payload)
    (call,) = message.tool_calls
    assert call["name"] == "run_code" and call["args"] == {"code": payload}
    result = as_langchain_tool(spec).invoke(call)
    assert isinstance(result, ToolMessage) and json.loads(result.content) == {"code": payload}
    assert recorder.calls == [{"code": payload}]


# -- the source itself -----------------------------------------------------------------
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_ATTRIBUTES = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("torch", "load"),
                        ("marshal", "load"), ("marshal", "loads"), ("dill", "load"), ("dill", "loads"),
                        ("yaml", "load"), ("yaml", "unsafe_load")}
FORBIDDEN_IMPORTS = {"pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}


def offences(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            found.append(f"line {node.lineno}: {node.func.id}()")
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and (node.value.id, node.attr) in FORBIDDEN_ATTRIBUTES):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
        elif isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_IMPORTS]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_IMPORTS:
            found.append(f"line {node.lineno}: from {node.module} import ...")
    return found


def test_the_offence_finder_finds_what_it_looks_for():
    source = "import pickle\nfrom marshal import loads\nx = eval(s)\nexec(s)\ntorch.load(f)\npickle.loads(b)\nmodel.eval()\n"
    assert len(offences(source)) == 6


@pytest.mark.parametrize("package", ["toolken_agent", "integrations", "tools"])
def test_no_module_evaluates_code_or_unpickles(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    found = {str(f.relative_to(ROOT)): offences(f.read_text()) for f in files}
    assert {f: o for f, o in found.items() if o} == {}


# -- checkpoints -----------------------------------------------------------------------
PAYLOAD_TOOLS = '''
from pathlib import Path
Path({marker!r}).write_text("ran")  # what a file shipped with a downloaded checkpoint could do


def add(a: float, b: float) -> float:
    """Add two numbers and return their sum."""
    return a + b


def weather_now(city: str) -> str:
    """Get the current weather for a city."""
    return city
'''


@pytest.fixture()
def downloaded(tmp_path, tiny_lm, small_toolset, marker, monkeypatch) -> Path:
    """A checkpoint that records the toolset ``payload.py``, shipped inside it, opened from its own directory."""
    from toolken_agent.toolset import Toolset

    toolkens = Toolkens.from_priors(tiny_lm, Toolset(small_toolset.specs, "payload.py"), prior="lm-head")
    path = toolkens.save(tmp_path / "downloaded")
    (path / "payload.py").write_text(PAYLOAD_TOOLS.format(marker=str(marker)))
    monkeypatch.chdir(path)  # where a relative toolset path used to be resolved
    return path


def test_loading_a_checkpoint_without_tools_imports_nothing_it_names(downloaded, tiny_lm):
    from toolken_agent.errors import CheckpointError, ToolsetError

    with pytest.raises(CheckpointError, match="holds weights, not tools: pass the toolset it was trained for .it was trained with 'payload.py'"):
        Toolkens.load(downloaded, lm=tiny_lm)
    with pytest.raises(ToolsetError, match="'payload.py' is not a registered toolset"):
        Toolkens.load(downloaded, lm=tiny_lm, trust_toolset=True)  # the opt-in reaches registered names only


@pytest.mark.parametrize("command", ["chat", "eval"])
@pytest.mark.parametrize("trust", [[], ["--trust-toolset"]], ids=["plain", "trust-toolset"])
def test_chat_and_eval_never_run_a_file_a_checkpoint_names(downloaded, tiny_model_dir, command, trust):
    from typer.testing import CliRunner

    from toolken_agent.cli import app

    data = downloaded / "test.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}) + "\n")
    args = [command, "--toolkens", str(downloaded), "--model", str(tiny_model_dir), "--dtype", "float32", *trust]
    result = CliRunner().invoke(app, args + (["--data", str(data)] if command == "eval" else []), input="hi\n")
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and ("--tools" in lines[0] if not trust else "not a registered toolset" in lines[0])


def test_the_opt_in_loads_a_registered_toolset_a_checkpoint_names(tmp_path, tiny_lm):
    from toolken_agent.toolset import load_toolset

    path = Toolkens.from_priors(tiny_lm, load_toolset("math"), prior="lm-head").save(tmp_path / "math")
    assert Toolkens.load(path, lm=tiny_lm, trust_toolset=True).toolset.names == load_toolset("math").names
