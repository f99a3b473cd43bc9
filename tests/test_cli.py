"""The command line: user mistakes are one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from toolken_agent.checkpoint import CONFIG_FILE, WEIGHTS_FILE
from toolken_agent.cli import app
from toolken_agent.training import LAMBDAS

runner = CliRunner()

from conftest import CLI_TOOLS as TOOLS, cli_conversation as conversation  # noqa: E402


@pytest.fixture()
def files(tmp_path):
    tools = tmp_path / "mytools.py"
    tools.write_text(TOOLS)
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(conversation(i)) for i in range(30)) + "\n")
    return tools, data


def test_tools_lists_names_and_arguments(files):
    result = runner.invoke(app, ["tools", str(files[0])])
    assert result.exit_code == 0
    assert "add" in result.output and "weather_now" in result.output and "city: string" in result.output


def test_train_saves_a_checkpoint_and_reports_heldout_accuracy(files, tiny_model_dir, tmp_path):
    tools, data = files
    out = tmp_path / "ckpt"
    result = runner.invoke(app, ["train", "--tools", str(tools), "--data", str(data), "--model", str(tiny_model_dir),
                                 "--out", str(out), "--epochs", "3", "--dtype", "float32", "--lambda", "auto"])
    assert result.exit_code == 0, result.output
    assert (out / WEIGHTS_FILE).is_file()
    config = json.loads((out / CONFIG_FILE).read_text())
    assert config["training"]["epochs_done"] == 3 and config["training"]["heldout_examples"] == 6
    assert "held-out tool selection" in result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert 0.0 <= figures["heldout"]["accuracy"] <= 1.0
    # --lambda auto chose among the candidates on a split of the training share
    assert figures["lambda"] in LAMBDAS and config["lambda_"] == figures["lambda"]
    assert "chosen on a split of the training data" in " ".join(result.output.split())


def test_a_given_lambda_is_trained_with_and_nothing_is_swept(files, tiny_model_dir, tmp_path):
    tools, data = files
    result = runner.invoke(app, ["train", "--tools", str(tools), "--data", str(data), "--model", str(tiny_model_dir),
                                 "--out", str(tmp_path / "c"), "--epochs", "1", "--lambda", "0.5", "--dtype", "float32"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["lambda"] == 0.5
    assert "chosen on a split" not in result.output


def test_train_without_any_data_saves_the_priors_and_says_so(tmp_path, tiny_model_dir):
    tools = tmp_path / "plain.py"
    tools.write_text('def shout(text: str) -> str:\n    """Repeat text in capitals."""\n    return text.upper()\nTOOLS = [shout]\n')
    result = runner.invoke(app, ["train", "--tools", str(tools), "--model", str(tiny_model_dir), "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert "saved the lm-head+description priors alone" in " ".join(result.output.split())
    assert (tmp_path / "c" / WEIGHTS_FILE).is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tools", "missing.py"], "no such file"),
        (["--tools", "{tools}", "--data", "missing.jsonl"], "no such file"),
        (["--tools", "{tools}", "--data", "{bad}"], "bad.jsonl:2: unknown tool 'fly'"),
        (["--tools", "{tools}", "--data", "{data}", "--model", "/no/such/model"], "no model at /no/such/model"),
        (["--tools", "{tools}", "--data", "{data}", "--prior", "magic"], "Invalid value for '--prior'"),  # a typer choice
        (["--tools", "{tools}", "--data", "{data}", "--lambda", "banana"], "--lambda must be auto or a number >= 0, not 'banana'"),
        (["--tools", "{tools}", "--data", "{data}", "--lambda=-1"], "--lambda must be auto or a number >= 0, not '-1'"),
        (["--tools", "{tools}", "--data", "{data}", "--lambda", "nan"], "--lambda must be auto or a number >= 0, not 'nan'"),
        (["--tools", "{tools}", "--data", "{data}", "--check", "{words}"], "words.jsonl holds no tool call to choose"),
        (["--tools", "{tools}", "--data", "{data}", "--check", "{bad}"], "bad.jsonl:2: unknown tool 'fly'"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(files, tmp_path, args, message):
    tools, data = files
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(conversation(1)) + "\n" + json.dumps(
        {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
            {"function": {"name": "fly", "arguments": "{}"}}]}]}) + "\n")
    words = tmp_path / "words.jsonl"
    words.write_text(json.dumps(conversation(0)) + "\n")
    args = [a.format(tools=tools, data=data, bad=bad, words=words) for a in args]
    result = runner.invoke(app, ["train", *args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_unknown_toolset_for_tools_command_is_exit_2():
    result = runner.invoke(app, ["tools", "no_such_toolset_anywhere"])
    assert result.exit_code == 2 and "no toolset" in result.output


def test_eval_prints_a_table_then_one_json_line(files, tiny_model_dir, tmp_path):
    tools, data = files
    out = tmp_path / "ckpt"
    trained = runner.invoke(app, ["train", "--tools", str(tools), "--data", str(data), "--model", str(tiny_model_dir),
                                  "--out", str(out), "--epochs", "1", "--dtype", "float32"])
    assert trained.exit_code == 0, trained.output
    test = tmp_path / "test.jsonl"
    test.write_text("\n".join(json.dumps(conversation(i)) for i in range(3)) + "\n")
    result = runner.invoke(app, ["eval", "--toolkens", str(out), "--tools", str(tools), "--data", str(test),
                                 "--model", str(tiny_model_dir), "--max-tokens", "2", "--dtype", "float32"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["examples"] == 3 and figures["call_turns"] == 2
    assert 0 <= figures["tool_selection_accuracy"] <= 1
    assert "tool selection accuracy" in result.output


def test_eval_of_a_missing_checkpoint_is_exit_2(files, tmp_path):
    _, data = files
    result = runner.invoke(app, ["eval", "--toolkens", str(tmp_path / "none"), "--data", str(data)])
    assert result.exit_code == 2 and "no toolken checkpoint" in result.output


@pytest.mark.parametrize("flag, added", [([], 16), (["--no-built-in-negatives"], 0)])
def test_train_adds_the_built_in_no_tool_requests_to_data_of_calls_alone_and_says_so(files, tiny_model_dir, tmp_path, flag, added):
    tools, _ = files
    calls = tmp_path / "calls.jsonl"
    calls.write_text("".join(json.dumps(conversation(i)) + "\n" for i in range(30) if i % 3))  # 20 calls, no replies in words
    out = tmp_path / "ckpt"
    result = runner.invoke(app, ["train", "--tools", str(tools), "--data", str(calls), "--model", str(tiny_model_dir),
                                 "--out", str(out), "--epochs", "1", "--lambda", "0.01", "--dtype", "float32", *flag])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "data: 20 conversations" in text
    assert ("+16 built-in requests that need no tool" in text) == bool(added)
    training = json.loads((out / CONFIG_FILE).read_text())["training"]
    assert training["negatives_added"] == added and training["examples"] + training["heldout_examples"] == 20 + added


def test_train_with_check_requests_trains_on_them_and_records_them(files, tiny_model_dir, tmp_path):
    tools, data = files
    check = tmp_path / "check.jsonl"
    check.write_text("".join(json.dumps(conversation(i)) + "\n" for i in range(30, 36)))
    out = tmp_path / "ckpt"
    result = runner.invoke(app, ["train", "--tools", str(tools), "--data", str(data), "--model", str(tiny_model_dir),
                                 "--out", str(out), "--epochs", "1", "--lambda", "0.01", "--dtype", "float32",
                                 "--check", str(check)])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert "check: 6 real requests joined the training data" in " ".join(result.output.split())
    config = json.loads((out / CONFIG_FILE).read_text())
    assert config["mix"] == figures["mix"] == config["training"]["mix"]
    assert config["training"]["check_examples"] == 6


def test_help_does_not_import_torch_or_the_tool_schema_stack():
    import subprocess
    import sys

    code = ("import sys; from typer.testing import CliRunner; from toolken_agent.cli import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'transformers', 'toolken_agent.tool') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("args", [["tools", "math"], ["tools", "math", "--json"]])
def test_listing_tools_does_not_import_torch(args):
    """`tools` parses docstrings with transformers' parser, which loads without torch: listing stays light."""
    import subprocess
    import sys

    code = ("import sys; from typer.testing import CliRunner; from toolken_agent.cli import app; "
            f"r = CliRunner().invoke(app, {args!r}); assert r.exit_code == 0, r.output; assert 'multiply' in r.output; "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_train_and_the_python_api_share_the_gate_default():
    import inspect

    from toolken_agent.cli import train
    from toolken_agent.gate import TARGET_FALSE_POSITIVES
    from toolken_agent.toolkens import Toolkens

    cli_default = inspect.signature(train).parameters["call_false_positives"].default
    api_default = inspect.signature(Toolkens.fit).parameters["call_false_positives"].default
    assert cli_default == api_default == TARGET_FALSE_POSITIVES


def test_train_and_the_python_api_read_one_set_of_defaults():
    """Every default `train` shares with `Toolkens.fit` (and its TrainConfig) is FIT's, so both train alike."""
    import inspect

    from toolken_agent.cli import train
    from toolken_agent.defaults import FIT
    from toolken_agent.toolkens import Toolkens
    from toolken_agent.training import TrainConfig

    cli = {name: p.default for name, p in inspect.signature(train).parameters.items()}
    api = {name: p.default for name, p in inspect.signature(Toolkens.fit).parameters.items()}
    config = TrainConfig()
    assert cli["prior"].value == api["prior"] == FIT.prior
    assert cli["lambda_"] == "auto" and tuple(api["lambdas"]) == FIT.lambdas == LAMBDAS  # both sweep by default
    assert cli["epochs"] == config.epochs == FIT.epochs and cli["lr"] == config.lr == FIT.lr
    assert cli["seed"] == config.seed == FIT.seed and config.lambda_ == FIT.lambda_
    for cli_name, api_name in (("bias", "bias"), ("calibrate", "calibrate"), ("holdout", "holdout"),
                               ("built_in_negatives", "negatives"), ("result_turns", "results"), ("reword", "reword"),
                               ("call_false_positives", "call_false_positives"), ("call_reach_miss", "call_reach_miss")):
        assert cli[cli_name] == api[api_name] == getattr(FIT, api_name), cli_name


def test_every_option_and_argument_has_help_text():
    import typer

    from toolken_agent.cli import app

    root = typer.main.get_command(app)
    missing = [f"{name} {param.name}" for name, command in [("", root), *root.commands.items()]
               for param in command.params
               if param.name != "help" and not (getattr(param, "help", None) or "").strip()]
    assert missing == []
    assert set(root.commands) == {"tools", "train", "eval", "chat"}
    assert sum(len(c.params) for c in root.commands.values()) > 30  # the walk saw every command's options


def test_version_prints_the_version():
    from toolken_agent import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"toolken-agent {__version__}"


def test_prior_and_dtype_are_choices(files, tmp_path, tiny_model_dir):
    from toolken_agent.console import Dtype
    from toolken_agent.model import parse_dtype

    assert [parse_dtype(d) for d in Dtype] == [parse_dtype(d.value) for d in Dtype]  # members are the strings it reads
    tools, data = files
    for option, value in (("--dtype", "float16"), ("--prior", "magic")):
        result = runner.invoke(app, ["train", "--tools", str(tools), "--data", str(data), option, value])
        assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output
    out = tmp_path / "ckpt"
    result = runner.invoke(app, ["train", "--tools", str(tools), "--data", str(data), "--model", str(tiny_model_dir),
                                 "--out", str(out), "--epochs", "1", "--lambda", "0.01", "--dtype", "float32",
                                 "--prior", "name"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / CONFIG_FILE).read_text())["prior"] == "name"


def test_tools_json_is_a_machine_readable_list(files):
    result = runner.invoke(app, ["tools", str(files[0]), "--json"])
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    assert [t["name"] for t in listing] == ["add", "weather_now"]
    assert listing[0]["description"] == "Add two numbers and return their sum."
    assert listing[0]["parameters"]["required"] == ["a", "b"] and listing[0]["parameters"]["type"] == "object"


def test_train_json_is_valid_with_a_call_less_heldout_split_and_says_so(tmp_path, tiny_model_dir, files):
    from toolken_agent.data import split_holdout

    tools, _ = files
    n = 12
    _, held = split_holdout(n, 0.2, seed=0)
    data = tmp_path / "calls-only-in-training.jsonl"
    data.write_text("\n".join(json.dumps(conversation(0 if i in held else 1)) for i in range(n)) + "\n")
    result = runner.invoke(app, ["train", "--tools", str(tools), "--data", str(data), "--model", str(tiny_model_dir),
                                 "--out", str(tmp_path / "ckpt"), "--epochs", "1", "--dtype", "float32"])
    assert result.exit_code == 0, result.output

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    figures = json.loads(result.stdout.strip().splitlines()[-1], parse_constant=refuse)
    assert figures["heldout"]["call_accuracy"] is None and figures["heldout"]["no_call_accuracy"] is not None
    assert "the held-out split has no calls" in " ".join(result.stderr.split())
    saved = json.loads((tmp_path / "ckpt" / CONFIG_FILE).read_text(), parse_constant=refuse)
    assert saved["training"]["heldout"]["call_accuracy"] is None


def test_train_shows_a_bar_per_phase_and_one_line_of_phase_times(files, tiny_model_dir, tmp_path):
    tools, data = files
    result = runner.invoke(app, ["train", "--tools", str(tools), "--data", str(data), "--model", str(tiny_model_dir),
                                 "--out", str(tmp_path / "ckpt"), "--epochs", "2", "--dtype", "float32"])
    assert result.exit_code == 0, result.output
    bars = " ".join(result.stderr.split())
    assert f"choosing lambda" in bars and f"{2 * len(LAMBDAS)}/{2 * len(LAMBDAS)} epochs" in bars.replace("━", "")
    assert "training toolkens" in bars and "caching frozen features" in bars
    [line] = [line for line in result.stdout.splitlines() if line.startswith("time: ")]
    assert all(phase in line for phase in ("model", "caching", "lambda sweep", "total"))
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"caching", "lambda sweep", "training"} <= set(figures["phase_seconds"])


def test_the_data_loaders_are_exported_at_the_top_level():
    import toolken_agent
    from toolken_agent.augment import example_conversations
    from toolken_agent.data import load_jsonl

    assert toolken_agent.load_jsonl is load_jsonl and toolken_agent.example_conversations is example_conversations
