"""Guarantee: hostile input to the command line is one clear line, never a traceback, never lost work.

Each case builds its input in a fresh workspace that already holds a finished
checkpoint, runs one command in-process, and is scored:

* handled cleanly: the expected exit code (2 for bad input, 130 for Ctrl-C, 0 where the
  input is odd but valid), the expected words on the last line of stderr (or in the
  output, for a success), a single ``error:`` line, and no traceback;
* a traceback: any exception other than the exit;
* data lost: the finished checkpoint changed or gone, or temporary copies left behind.

Every case is its own test, so ``pytest -q`` counts them; the tally (cases tried /
handled cleanly / tracebacks / data lost) is printed at the end of the module
(``pytest -s``). Concurrency and SIGKILL cases are in test_guarantee_checkpoint_writes.py.
"""

from __future__ import annotations

import errno
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from typer.testing import CliRunner

import toolken_agent.checkpoint as checkpoint
import toolken_agent.model as model_module
import toolken_agent.toolkens as toolkens_module
import toolken_agent.training as training
from conftest import CLI_TOOLS as TOOLS, cli_conversation as conversation
from toolken_agent.checkpoint import CONFIG_FILE, WEIGHTS_FILE
from toolken_agent.cli import app
from toolken_agent.toolkens import Toolkens
from toolken_agent.toolset import load_toolset

TALLY: Counter[str] = Counter()
runner = CliRunner()


@dataclass
class Workspace:
    root: Path
    model: Path  # the tiny model's directory
    tools: Path  # a good toolset file
    data: Path  # 30 good conversations
    ckpt: Path  # a finished checkpoint for ``tools`` that must survive every case

    def write(self, name: str, text: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
        return path

    def train(self, *args: str, data: Path | None = None, tools: Path | None = None) -> list[str]:
        return ["train", "--tools", str(tools or self.tools), "--data", str(data or self.data), "--model", str(self.model),
                "--epochs", "1", "--lambda", "0.01", "--dtype", "float32", *args]

    def evaluate(self, *args: str, data: Path | None = None) -> list[str]:
        return ["eval", "--toolkens", str(self.ckpt), "--data", str(data or self.data), "--model", str(self.model),
                "--max-tokens", "2", "--limit", "2", "--dtype", "float32", *args]


@dataclass
class Case:
    name: str
    args: Callable[[Workspace], list[str]]
    expect: str  # words on the last line of stderr (exit != 0), or anywhere in the output (exit 0)
    code: int = 2
    patch: Callable[[pytest.MonkeyPatch, Workspace], None] | None = None
    check: Callable[[object, Workspace], bool] = field(default=lambda result, ws: True)
    stdin: str = ""


# -- inputs --------------------------------------------------------------------------------
def tool_file(body: str) -> str:
    return "from toolken_agent.tool import Tool, ToolSpec\nfrom typing import Callable\n\n" + body


MARKUP_DOC = tool_file('class Compute(Tool):\n    """Compute [/x] things [bold]now."""\n\n'
                       '    examples = [("Compute 3 [/x]", {"a": 3})]\n\n    def run(self, a: int) -> int:\n        return a\n')
CALLABLE_ARG = tool_file('class Apply(Tool):\n    """Apply a function."""\n\n'
                         '    def run(self, f: Callable[[int], int]) -> int:\n        return 1\n')
FOO_TYPE = tool_file('TOOLS = [ToolSpec("odd", "An odd tool.", {"type": "object", "properties": {"a": {"type": "foo"}}})]\n')
EXITS = "import sys\nsys.exit(0)\n"
INTERRUPTS_AT_IMPORT = "raise KeyboardInterrupt\n"
PRINTS = TOOLS.replace('        return a + b', '        print("NOISE from add")\n        return a + b') + 'print("NOISE at import")\n'
PAYLOAD = 'from pathlib import Path\nPath(__file__).with_name("pwned").write_text("ran")\n' + TOOLS


def long_conversation(ws: Workspace) -> Path:
    text = "word " * 3000  # far past the tiny model's 512-token context
    return ws.write("long.jsonl", json.dumps(conversation(1)) + "\n" + json.dumps(
        {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}]}) + "\n")


def truncated_model(ws: Workspace) -> Path:
    import shutil

    copy = ws.root / "broken-model"
    shutil.copytree(ws.model, copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return copy


def garbage_config_model(ws: Workspace) -> Path:
    import shutil

    copy = ws.root / "garbled-model"
    shutil.copytree(ws.model, copy)
    (copy / "config.json").write_text("{not json")
    return copy


def forge(ws: Workspace, name: str, edit: Callable[[dict], None]) -> Path:
    """The finished checkpoint copied to ``name``, its config edited and both hashes recomputed, as anyone can."""
    import hashlib
    import shutil

    from safetensors.torch import load_file, save_file

    copy = ws.root / name
    shutil.copytree(ws.ckpt, copy)
    config = json.loads((copy / CONFIG_FILE).read_text())
    edit(config)
    save_file(load_file(str(copy / WEIGHTS_FILE)), str(copy / WEIGHTS_FILE),
              metadata={"config_sha256": checkpoint.config_digest(config)})
    config["weights_sha256"] = hashlib.sha256((copy / WEIGHTS_FILE).read_bytes()).hexdigest()
    (copy / CONFIG_FILE).write_text(json.dumps(config))
    return copy


def forged(ws: Workspace) -> Path:
    return forge(ws, "forged", lambda config: config.update(tools=[1, *config["tools"][1:]]))


def payload_checkpoint(ws: Workspace) -> Path:
    """A checkpoint recording the toolset ``payload.py``, shipped inside it; the command runs from there."""
    copy = forge(ws, "downloaded", lambda config: config.update(toolset="payload.py"))
    (copy / "payload.py").write_text(PAYLOAD)
    os.chdir(copy)
    return copy


# -- hostile environments --------------------------------------------------------------------
def disk_full_when_renaming(mp: pytest.MonkeyPatch, ws: Workspace) -> None:
    real = os.replace

    def replace(src, dst, *a, **k):
        if str(dst).startswith(str(ws.root / "runs")):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst, *a, **k)

    mp.setattr(os, "replace", replace)


def disk_full_in_safetensors(mp: pytest.MonkeyPatch, ws: Workspace) -> None:
    from safetensors import SafetensorError

    real = checkpoint.save_file

    def save_file(tensors, filename, *a, **k):
        if str(filename).startswith(str(ws.root / "runs")):
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(tensors, filename, *a, **k)

    mp.setattr(checkpoint, "save_file", save_file)


def read_only_mount(mp: pytest.MonkeyPatch, ws: Workspace) -> None:
    real = os.mkdir

    def mkdir(path, *a, **k):
        if str(path).startswith(str(ws.root / "ro")):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real(path, *a, **k)

    (ws.root / "ro").mkdir()
    mp.setattr(os, "mkdir", mkdir)


def ctrl_c_in_lambda_sweep(mp: pytest.MonkeyPatch, ws: Workspace) -> None:
    def joint_loss(head, batch):
        raise KeyboardInterrupt

    mp.setattr(training, "joint_loss", joint_loss)


def ctrl_c_after_first_epoch(mp: pytest.MonkeyPatch, ws: Workspace) -> None:
    real = toolkens_module.train_head

    def train_head(head, features, config, *, on_epoch=None):
        def epoch_done(epoch, loss):
            if on_epoch is not None:
                on_epoch(epoch, loss)
            raise KeyboardInterrupt

        return real(head, features, config, on_epoch=epoch_done)

    mp.setattr(toolkens_module, "train_head", train_head)


def ctrl_c_while_fitting_the_gate(mp: pytest.MonkeyPatch, ws: Workspace) -> None:
    def train_gate(*a, **k):
        raise KeyboardInterrupt

    mp.setattr(toolkens_module, "train_gate", train_gate)


def ctrl_c_while_caching(mp: pytest.MonkeyPatch, ws: Workspace) -> None:
    def extract(*a, **k):
        raise KeyboardInterrupt

    mp.setattr(toolkens_module, "extract_features", extract)


def ctrl_c_while_loading_the_model(mp: pytest.MonkeyPatch, ws: Workspace) -> None:
    def load_model(*a, **k):
        raise KeyboardInterrupt

    mp.setattr(model_module, "load_model", load_model)


def symlinked_out(ws: Workspace) -> Path:
    real = ws.root / "store" / "ckpt"
    real.mkdir(parents=True)
    link = ws.root / "latest"
    link.symlink_to(real, target_is_directory=True)
    return link


def json_alone_on_stdout(result, ws: Workspace) -> bool:
    lines = result.stdout.strip().splitlines()
    return "NOISE" not in result.stdout and "NOISE" in result.stderr and "examples" in json.loads(lines[-1])


def nothing_ran(result, ws: Workspace) -> bool:
    return not (ws.root / "downloaded" / "pwned").exists()


CASES = [
    # `tools`
    Case("tools: docstring with [/x] markup", lambda ws: ["tools", str(ws.write("markup.py", MARKUP_DOC))],
         "Compute [/x] things", code=0),
    Case("tools: path with [/x] in it", lambda ws: ["tools", str(ws.write("weird[/x]dir/mytools.py", TOOLS))], "[/x]", code=0),
    Case("tools: argument typed Callable[[int], int]", lambda ws: ["tools", str(ws.write("apply.py", CALLABLE_ARG))],
         "tool 'apply': its arguments have no JSON schema"),
    Case('tools: schema with "type": "foo"', lambda ws: ["tools", str(ws.write("odd.py", FOO_TYPE))],
         "tool 'odd': its argument schema is invalid at properties/a/type"),
    Case("tools: sys.exit(0) at import", lambda ws: ["tools", str(ws.write("exits.py", EXITS))], "it called sys.exit(0)"),
    Case("tools: KeyboardInterrupt at import", lambda ws: ["tools", str(ws.write("ki.py", INTERRUPTS_AT_IMPORT))],
         "interrupted", code=130),
    Case("tools: syntax error", lambda ws: ["tools", str(ws.write("syntax.py", "def f(:\n"))], "cannot import"),
    Case("tools: binary garbage .py", lambda ws: ["tools", str(ws.write("garbage.py", bytes(range(256))))], "cannot import"),
    Case("tools: file with no tools", lambda ws: ["tools", str(ws.write("empty.py", "x = 1\n"))], "no tools found"),
    # `train`: odd but valid
    Case("train: docstring with [/x] markup", lambda ws: ws.train("--out", str(ws.root / "m"), data=ws.write(
        "m.jsonl", "\n".join(json.dumps({"messages": [{"role": "user", "content": f"Compute {i} [/x]"}, {
            "role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {
                "name": "compute", "arguments": json.dumps({"a": i})}}]}]}) for i in range(12)) + "\n"),
        tools=ws.write("markup.py", MARKUP_DOC)), "saved toolkens to", code=0),
    Case("train: --out with [/x] (after saving)", lambda ws: ws.train("--out", str(ws.root / "runs" / "a[/x]b")),
         "saved toolkens to", code=0),
    Case("train: --data with [/x]", lambda ws: ws.train("--out", str(ws.root / "d"), data=ws.write(
        "da[/x]ta.jsonl", ws.data.read_text())), "saved toolkens to", code=0),
    Case("train: --out a symlink to a directory", lambda ws: ws.train("--out", str(symlinked_out(ws))),
         "is a symlink: saving to where it points", code=0,
         check=lambda r, ws: (ws.root / "latest").is_symlink() and (ws.root / "store" / "ckpt" / CONFIG_FILE).is_file()),
    Case("train: a tool printing to stdout", lambda ws: ws.train("--out", str(ws.root / "p"), tools=ws.write("noisy.py", PRINTS)),
         "saved toolkens to", code=0, check=lambda r, ws: "NOISE" not in r.stdout and "heldout" in json.loads(
             r.stdout.strip().splitlines()[-1])),
    # `train`: refused, before any training
    Case("train: --out .", lambda ws: ws.train("--out", "."), "names no directory to save to"),
    Case("train: --out is a file", lambda ws: ws.train("--out", str(ws.write("notes.txt", "mine"))),
         "exists and is not a directory", check=lambda r, ws: "model" not in r.stderr),
    Case("train: --out is a directory of other files", lambda ws: ws.train("--out", str(ws.write("thesis/ch1.tex", "x").parent)),
         "holds no toolken checkpoint; not replacing it", check=lambda r, ws: (ws.root / "thesis" / "ch1.tex").is_file()),
    Case("train: --out on a read-only mount", lambda ws: ws.train("--out", str(ws.root / "ro" / "ckpt")),
         "Read-only file system", patch=read_only_mount, check=lambda r, ws: "model" not in r.stderr),
    Case("train: conversation past the model's context", lambda ws: ws.train("--out", str(ws.root / "l"), data=long_conversation(ws)),
         "long.jsonl:2: conversation of", check=lambda r, ws: "(512 tokens); split or shorten it" in r.stderr),
    Case("train: --model with truncated model.safetensors", lambda ws: ws.train("--out", str(ws.root / "t"), "--model",
                                                                                  str(truncated_model(ws))),
         "cannot load model"),
    Case("train: --model with config.json not JSON", lambda ws: ws.train("--out", str(ws.root / "g"), "--model",
                                                                           str(garbage_config_model(ws))), "cannot load model"),
    # `train`: the disk fails at the end; the training is not lost
    Case("train: disk full when saving (ENOSPC)", lambda ws: ws.train("--out", str(ws.root / "runs" / "c")),
         "No space left on device; the toolkens were saved to", patch=disk_full_when_renaming),
    Case("train: disk full inside safetensors", lambda ws: ws.train("--out", str(ws.root / "runs" / "c")),
         "No space left on device (os error 28); the toolkens were saved to", patch=disk_full_in_safetensors),
    # `train`: Ctrl-C, over the finished checkpoint
    Case("train: Ctrl-C while loading the model", lambda ws: ws.train("--out", str(ws.ckpt)), "interrupted: nothing saved",
         code=130, patch=ctrl_c_while_loading_the_model),
    Case("train: Ctrl-C while caching", lambda ws: ws.train("--out", str(ws.ckpt)),
         "interrupted while caching features, before training: nothing saved", code=130, patch=ctrl_c_while_caching),
    Case("train: Ctrl-C in the lambda sweep", lambda ws: ws.train("--out", str(ws.ckpt), "--lambda", "auto"),
         "interrupted while choosing lambda, before training: nothing saved", code=130, patch=ctrl_c_in_lambda_sweep),
    Case("train: Ctrl-C after an epoch, over a finished run", lambda ws: ws.train("--out", str(ws.ckpt), "--epochs", "3"),
         "holds a finished run and is unchanged", code=130, patch=ctrl_c_after_first_epoch,
         check=lambda r, ws: (ws.ckpt.with_name("ckpt.interrupted") / CONFIG_FILE).is_file()),
    Case("train: Ctrl-C while fitting the call gate, over a finished run", lambda ws: ws.train("--out", str(ws.ckpt)),
         "saved the 1 finished epochs to", code=130, patch=ctrl_c_while_fitting_the_gate,
         check=lambda r, ws: (ws.ckpt.with_name("ckpt.interrupted") / CONFIG_FILE).is_file()),
    # `eval` and `chat`
    Case("eval: checkpoint without --tools", lambda ws: ws.evaluate(), "pass --tools with the toolset"),
    Case("eval: a tool printing to stdout", lambda ws: ws.evaluate("--tools", str(ws.write("noisy.py", PRINTS))),
         "tool selection accuracy", code=0, check=json_alone_on_stdout),
    Case("eval: --data with [/x]", lambda ws: ws.evaluate("--tools", str(ws.tools), data=ws.write("te[/x]st.jsonl", ws.data.read_text())),
         "tool selection accuracy", code=0),
    Case("eval: forged config with recomputed hashes", lambda ws: [*ws.evaluate("--tools", str(ws.tools))[:2], str(forged(ws)),
                                                                   *ws.evaluate("--tools", str(ws.tools))[3:]],
         "tools.0: Input should be a valid dictionary"),
    Case("eval: --toolkens is a file", lambda ws: ["eval", "--toolkens", str(ws.tools), "--data", str(ws.data), "--tools", str(ws.tools)],
         "no toolken checkpoint"),
    Case("eval: config is a JSON list", lambda ws: ["eval", "--toolkens", str(ws.write("listy/" + CONFIG_FILE, "[1, 2]").parent),
                                                    "--data", str(ws.data), "--tools", str(ws.tools)], "is not a toolken checkpoint"),
    Case("eval: tools that changed since training", lambda ws: ws.evaluate("--tools", str(ws.write(
        "changed.py", TOOLS.replace("Add two numbers", "Sum two numbers")))), "changed since"),
    Case("chat: checkpoint naming a payload file beside it", lambda ws: ["chat", "--toolkens", str(payload_checkpoint(ws)),
                                                                         "--model", str(ws.model)],
         "pass --tools with the toolset", stdin="hi\n", check=nothing_ran),
    Case("chat: --trust-toolset on a payload file", lambda ws: ["chat", "--toolkens", str(payload_checkpoint(ws)), "--trust-toolset",
                                                                "--model", str(ws.model)],
         "'payload.py' is not a registered toolset", stdin="hi\n", check=nothing_ran),
]


@pytest.fixture(scope="module", autouse=True)
def report_tally():
    yield
    print(f"\nhostile inputs: {TALLY['tried']} cases tried, {TALLY['clean']} handled cleanly, "
          f"{TALLY['traceback']} tracebacks, {TALLY['lost']} with data lost")


@pytest.fixture()
def ws(tmp_path, tiny_lm, tiny_model_dir, monkeypatch) -> Workspace:
    monkeypatch.chdir(tmp_path)
    tools = tmp_path / "mytools.py"
    tools.write_text(TOOLS)
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(conversation(i)) for i in range(30)) + "\n")
    toolkens = Toolkens.from_priors(tiny_lm, load_toolset(str(tools)), prior="lm-head")
    ckpt = toolkens.save(tmp_path / "runs" / "ckpt")
    return Workspace(tmp_path, tiny_model_dir, tools, data, ckpt)


def snapshot(path: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(path.iterdir())}


def temporary_copies(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".tmp-" in p.name or ".old-" in p.name)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_is_handled_cleanly(case: Case, ws: Workspace, monkeypatch):
    before = snapshot(ws.ckpt)
    args = case.args(ws)
    if case.patch is not None:
        case.patch(monkeypatch, ws)
    result = runner.invoke(app, args, input=case.stdin)
    monkeypatch.undo()
    traceback = result.exception is not None and not isinstance(result.exception, SystemExit)
    lost = not ws.ckpt.is_dir() or snapshot(ws.ckpt) != before or bool(temporary_copies(ws.root))
    stderr_lines = [line for line in result.stderr.splitlines() if line.strip()]
    said = result.output if case.code == 0 else (stderr_lines[-1] if stderr_lines else "")
    clean = (result.exit_code == case.code and not traceback and case.expect in said
             and sum(line.startswith("error:") for line in stderr_lines) == (1 if case.code == 2 else 0)
             and "Traceback" not in result.output and case.check(result, ws))
    TALLY["tried"] += 1
    TALLY["clean"] += clean and not lost
    TALLY["traceback"] += traceback
    TALLY["lost"] += lost
    assert not traceback, f"{case.name}: {result.exception!r}"
    assert not lost, f"{case.name}: the finished checkpoint changed or temporary copies were left: {temporary_copies(ws.root)}"
    assert clean, f"{case.name}: exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
