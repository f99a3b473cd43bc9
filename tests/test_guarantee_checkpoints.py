"""Guarantee: a toolken checkpoint is whole, untampered and for this model and toolset,
or it is refused with a clear ``CheckpointError``.

Writes are atomic (a temporary directory renamed into place): a save that fails or is
interrupted at any step leaves the previous checkpoint byte for byte and no partial
directory. Ctrl-C while caching features, choosing lambda or training keeps the previous
checkpoint, or saves exactly the last finished epoch, beside a finished run rather than
over it. Loading reads safetensors and JSON only.
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import toolken_agent.checkpoint as checkpoint
import toolken_agent.toolkens as toolkens_module
import toolken_agent.training as training
from conftest import CLI_TOOLS as TOOLS, cli_conversation as conversation
from toolken_agent.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint
from toolken_agent.cli import app
from toolken_agent.errors import CheckpointError
from toolken_agent.tool import Tool
from toolken_agent.toolkens import Toolkens
from toolken_agent.toolset import make_toolset

runner = CliRunner()
IDS = torch.tensor([[3, 14, 15, 92, 65]])


@pytest.fixture()
def saved(tmp_path, tiny_lm, small_toolset) -> tuple[Toolkens, Path]:
    toolkens = Toolkens.from_priors(tiny_lm, small_toolset, prior="lm-head")
    with torch.no_grad():
        toolkens.head.weight.add_(torch.randn_like(toolkens.head.weight, generator=torch.Generator().manual_seed(1)))
        toolkens.head.bias.uniform_(-1, 1)
    toolkens.training = {"epochs_done": 3}
    toolkens.demos = {"add": [{"prompt": "What is 3 plus 4?", "args": {"a": 3, "b": 4}}]}
    return toolkens, toolkens.save(tmp_path / "ckpt")


def contents(path: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(path.iterdir())}


def leftovers(path: Path) -> list[str]:
    """Anything beside the checkpoint directory: temporary or moved-aside copies."""
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


# -- atomic writes ---------------------------------------------------------------------
class Crash:
    """Makes one step of ``save_checkpoint`` fail: ``where`` names the step."""

    def __init__(self, monkeypatch, where: str, error: type[BaseException]):
        self.error = error
        self.renames = 0
        if where == "weights":
            real = checkpoint.save_file

            def half_written(tensors, filename, *args, **kwargs):
                real(tensors, filename, *args, **kwargs)
                data = Path(filename).read_bytes()
                Path(filename).write_bytes(data[: len(data) // 2])
                raise self.error("disk full")

            monkeypatch.setattr(checkpoint, "save_file", half_written)
        elif where == "config":
            real_write = pathlib.Path.write_text

            def half_config(path, text, *args, **kwargs):
                real_write(path, text[: len(text) // 2], *args, **kwargs)
                raise self.error("disk full")

            monkeypatch.setattr(pathlib.Path, "write_text", half_config)
        elif where == "fsync":
            monkeypatch.setattr(checkpoint.os, "fsync", self.fail)
        else:
            real_replace = os.replace
            fail_at = {"move old aside": 1, "move new in": 2}[where]

            def replace(src, dst):
                self.renames += 1
                if self.renames == fail_at:
                    raise self.error("interrupted")
                real_replace(src, dst)

            monkeypatch.setattr(checkpoint.os, "replace", replace)

    def fail(self, *args, **kwargs):
        raise self.error("interrupted")


STEPS = ["weights", "config", "fsync", "move old aside", "move new in"]


@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError], ids=["ctrl-c", "os-error"])
@pytest.mark.parametrize("where", STEPS)
def test_a_save_that_fails_midway_leaves_the_previous_checkpoint_whole(saved, tiny_lm, small_toolset, monkeypatch,
                                                                       where, error):
    toolkens, path = saved
    before = contents(path)
    with torch.no_grad():
        toolkens.head.weight.mul_(2)  # the new save would differ
    with monkeypatch.context() as patch:
        Crash(patch, where, error)
        with pytest.raises(error):
            toolkens.save(path)
    assert contents(path) == before
    assert leftovers(path) == []
    with torch.no_grad():
        toolkens.head.weight.div_(2)
    assert torch.equal(Toolkens.load(path, small_toolset, lm=tiny_lm).logits(IDS), toolkens.logits(IDS))


@pytest.mark.parametrize("where", STEPS[:4])  # with no previous checkpoint, the one rename is the first
def test_a_first_save_that_fails_leaves_no_directory(saved, tmp_path, monkeypatch, where):
    toolkens, _ = saved
    fresh = tmp_path / "fresh"
    with monkeypatch.context() as patch:
        Crash(patch, where, KeyboardInterrupt)
        with pytest.raises(KeyboardInterrupt):
            toolkens.save(fresh)
    assert not fresh.exists() and leftovers(fresh) == ["ckpt"]


def test_a_successful_save_replaces_the_old_checkpoint_and_leaves_nothing_else(saved, tiny_lm, small_toolset):
    toolkens, path = saved
    with torch.no_grad():
        toolkens.head.weight.mul_(2)
    toolkens.save(path)
    assert leftovers(path) == []
    assert torch.equal(Toolkens.load(path, small_toolset, lm=tiny_lm).logits(IDS), toolkens.logits(IDS))


# -- Ctrl-C during `toolken-agent train` -----------------------------------------------
@pytest.fixture()
def project(tmp_path, tiny_model_dir):
    tools = tmp_path / "mytools.py"
    tools.write_text(TOOLS)
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(conversation(i)) for i in range(200)) + "\n")  # several batches an epoch

    def train(out: Path, epochs: int, lambda_: str = "0.01"):  # a fixed lambda: runs of different lengths compare
        return runner.invoke(app, ["train", "--tools", str(tools), "--data", str(data), "--model", str(tiny_model_dir),
                                   "--out", str(out), "--epochs", str(epochs), "--dtype", "float32", "--lambda", lambda_])

    return train


@pytest.fixture()
def previous(tmp_path, project) -> tuple[Path, dict[str, bytes]]:
    """A checkpoint from an earlier, finished run at the output directory."""
    out = tmp_path / "runs" / "ckpt"
    result = project(out, 2)
    assert result.exit_code == 0, result.output
    return out, contents(out)


def interrupt_caching(monkeypatch) -> None:
    """Ctrl-C in the feature cache's progress callback, after its first batch."""
    real = toolkens_module.extract_features

    def extract(lm, rendered, *, on_progress=None, **kwargs):
        def progress(n):
            raise KeyboardInterrupt

        return real(lm, rendered, on_progress=progress, **kwargs)

    monkeypatch.setattr(toolkens_module, "extract_features", extract)


def interrupt_after_epochs(monkeypatch, finished: int, *, mid_epoch: bool) -> None:
    """Ctrl-C once ``finished`` epochs are done: in ``on_epoch``, or in the next epoch's
    second step (after one optimizer step has already moved the weights)."""
    real_train, real_loss = toolkens_module.train_head, training.joint_loss
    done = {"epochs": 0, "steps after": 0}

    def train_head(head, features, config, *, on_epoch=None):
        def epoch_done(epoch, loss):
            if on_epoch is not None:
                on_epoch(epoch, loss)
            done["epochs"] = epoch + 1
            if not mid_epoch and done["epochs"] == finished:
                raise KeyboardInterrupt

        return real_train(head, features, config, on_epoch=epoch_done)

    def joint_loss(head, batch):
        if mid_epoch and done["epochs"] == finished:
            done["steps after"] += 1
            if done["steps after"] == 2 or finished == 0:
                raise KeyboardInterrupt
        return real_loss(head, batch)

    monkeypatch.setattr(toolkens_module, "train_head", train_head)
    monkeypatch.setattr(training, "joint_loss", joint_loss)


def test_ctrl_c_while_caching_keeps_the_previous_checkpoint(previous, project, monkeypatch):
    out, before = previous
    interrupt_caching(monkeypatch)
    result = project(out, 5)
    assert result.exit_code == 130 and "interrupted" in result.output and "Traceback" not in result.output
    assert contents(out) == before and leftovers(out) == []


def test_ctrl_c_before_the_first_epoch_ends_keeps_the_previous_checkpoint(previous, project, monkeypatch):
    out, before = previous
    interrupt_after_epochs(monkeypatch, 0, mid_epoch=True)
    result = project(out, 5)
    assert result.exit_code == 130
    assert "interrupted before the first epoch finished: nothing saved" in " ".join(result.output.split())
    assert contents(out) == before and leftovers(out) == []


def test_ctrl_c_in_the_lambda_sweep_exits_130_and_keeps_the_previous_checkpoint(previous, project, monkeypatch):
    out, before = previous
    interrupt_after_epochs(monkeypatch, 0, mid_epoch=True)  # the sweep's first step: no final training yet
    result = project(out, 5, "auto")
    assert result.exit_code == 130 and "Traceback" not in result.output, result.output
    assert "interrupted while choosing lambda, before training: nothing saved" in " ".join(result.output.split())
    assert contents(out) == before and leftovers(out) == []


@pytest.mark.parametrize("finished, mid_epoch", [(1, False), (3, False), (2, True)],
                         ids=["after epoch 1", "after epoch 3", "during epoch 3"])
def test_ctrl_c_during_training_saves_exactly_the_last_finished_epoch_beside_a_finished_run(
        previous, project, tmp_path, monkeypatch, finished, mid_epoch):
    out, before = previous
    reference = tmp_path / "reference"
    assert project(reference, finished).exit_code == 0  # the same run, not interrupted, `finished` epochs long
    interrupt_after_epochs(monkeypatch, finished, mid_epoch=mid_epoch)
    result = project(out, 10)
    assert result.exit_code == 130, result.output
    partial = out.with_name("ckpt.interrupted")
    said = " ".join(result.output.split())
    assert f"interrupted: saved the {finished} finished epochs to {partial}; {out} holds a finished run" in said
    assert contents(out) == before and leftovers(out) == ["ckpt.interrupted"]
    config = json.loads((partial / CONFIG_FILE).read_text())
    assert config["training"]["epochs_done"] == finished and config["training"]["interrupted"] is True
    got, want = load_file(str(partial / WEIGHTS_FILE)), load_file(str(reference / WEIGHTS_FILE))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    load_checkpoint(partial)  # whole and verified


def test_ctrl_c_during_training_saves_at_out_when_no_finished_run_is_there(project, tmp_path, monkeypatch):
    out = tmp_path / "runs" / "fresh"
    with monkeypatch.context() as patch:
        interrupt_after_epochs(patch, 1, mid_epoch=False)
        assert project(out, 5).exit_code == 130
    first = contents(out)
    assert json.loads(first[CONFIG_FILE])["training"]["interrupted"] is True
    with monkeypatch.context() as patch:
        interrupt_after_epochs(patch, 2, mid_epoch=False)  # an interrupted run may replace an interrupted one
        result = project(out, 5)
    assert result.exit_code == 130 and f"saved the 2 finished epochs to {out}" in " ".join(result.output.split())
    assert contents(out) != first and leftovers(out) == []


# -- refusals --------------------------------------------------------------------------
def flipped(data: bytes, at: int, bit: int) -> bytes:
    return data[:at] + bytes([data[at] ^ bit]) + data[at + 1:]


@pytest.mark.parametrize("name", [WEIGHTS_FILE, CONFIG_FILE])
def test_every_flipped_bit_and_letter_case_is_refused(saved, name):
    _, path = saved
    original = (path / name).read_bytes()
    refused = 0
    for at in range(len(original)):
        for bit in (0x01, 0x20):
            (path / name).write_bytes(flipped(original, at, bit))
            with pytest.raises(CheckpointError, match="damaged|truncated or modified|format version|toolken matrix"):
                load_checkpoint(path)
            refused += 1
    (path / name).write_bytes(original)
    load_checkpoint(path)
    print(f"{name}: {refused} tampered copies refused")


@pytest.mark.parametrize("name", [WEIGHTS_FILE, CONFIG_FILE])
def test_truncated_files_are_refused(saved, name):
    _, path = saved
    original = (path / name).read_bytes()
    for size in sorted({0, 1, 8, 64, len(original) // 2, len(original) - 2, len(original) - 1}):
        if original[:size].rstrip() == original.rstrip():
            continue  # only a trailing newline cut: the same content
        (path / name).write_bytes(original[:size])
        with pytest.raises(CheckpointError, match="damaged|truncated or modified"):
            load_checkpoint(path)


@pytest.mark.parametrize("name", [WEIGHTS_FILE, CONFIG_FILE])
def test_a_missing_file_is_refused(saved, name):
    _, path = saved
    (path / name).unlink()
    with pytest.raises(CheckpointError, match=f"is not a toolken checkpoint .needs {CONFIG_FILE} and {WEIGHTS_FILE}"):
        load_checkpoint(path)


def test_a_checkpoint_from_a_newer_release_names_its_format_version(saved):
    _, path = saved
    config = json.loads((path / CONFIG_FILE).read_text())
    config.update(format_version=2, some_new_field=True)
    (path / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="format version 2; this release reads 1"):
        load_checkpoint(path)


def test_a_reindented_config_still_loads(saved, tiny_lm, small_toolset):
    toolkens, path = saved
    config = json.loads((path / CONFIG_FILE).read_text())
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=4, sort_keys=True))
    assert torch.equal(Toolkens.load(path, small_toolset, lm=tiny_lm).logits(IDS), toolkens.logits(IDS))


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory) -> Path:
    from conftest import make_tiny_lm

    other = make_tiny_lm(seed=1)
    path = tmp_path_factory.mktemp("other-model")
    other.model.save_pretrained(path)
    other.tokenizer.save_pretrained(path)
    return path


def test_chat_toolken_refuses_a_checkpoint_for_another_model(saved, other_model_dir):
    from toolken_agent import ChatToolken

    _, path = saved
    llm = ChatToolken(model=str(other_model_dir), toolkens=str(path), dtype="float32", max_tokens=2)
    with pytest.raises(CheckpointError, match="was trained for model 'tiny'"):
        llm.invoke("hello")


def test_eval_refuses_a_checkpoint_for_another_model_in_one_line(saved, other_model_dir, tmp_path):
    _, path = saved
    data = tmp_path / "test.jsonl"
    data.write_text(json.dumps(conversation(0)) + "\n")
    tools = tmp_path / "mytools.py"
    tools.write_text(TOOLS)
    result = runner.invoke(app, ["eval", "--toolkens", str(path), "--tools", str(tools), "--data", str(data),
                                 "--model", str(other_model_dir), "--dtype", "float32"])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "was trained for model" in errors[0] and "Traceback" not in result.output


def test_a_tool_whose_arguments_changed_is_refused(saved, tiny_lm, small_toolset):
    _, path = saved

    class Add(Tool):
        """Add two numbers and return their sum."""

        def run(self, a: int, b: int) -> int:  # was float
            return a + b

    with pytest.raises(CheckpointError, match="tool 'add' changed since .* was trained .description or arguments.; retrain it"):
        Toolkens.load(path, make_toolset([Add, small_toolset.specs[1]]), lm=tiny_lm)


def test_an_added_or_renamed_tool_is_refused(saved, tiny_lm, small_toolset):
    _, path = saved

    def subtract(a: float, b: float) -> float:
        """Subtract b from a."""
        return a - b

    with pytest.raises(CheckpointError, match="different toolset .untrained: subtract."):
        Toolkens.load(path, make_toolset([*small_toolset.specs, subtract]), lm=tiny_lm)
    renamed = [small_toolset.specs[0], subtract]
    with pytest.raises(CheckpointError, match="untrained: subtract; not in the toolset: weather_now"):
        Toolkens.load(path, make_toolset(renamed), lm=tiny_lm)


def test_chat_toolken_refuses_a_bound_tool_changed_since_training_as_the_cli_does(saved, tiny_model_dir):
    from langchain_core.tools import tool

    from toolken_agent import ChatToolken
    from toolken_agent.errors import CheckpointError

    _, path = saved

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    llm = ChatToolken(model=str(tiny_model_dir), toolkens=str(path), dtype="float32", max_tokens=2)
    with pytest.raises(CheckpointError, match="tool 'add' changed since .* was trained"):
        llm.bind_tools([add]).invoke("hello")


# -- no pickle -------------------------------------------------------------------------
@pytest.fixture()
def no_unpickling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint was unpickled")

    for module, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load"),
                         (torch.serialization, "load")]:
        monkeypatch.setattr(module, name, refuse)


def test_loading_works_with_every_unpickler_disabled(saved, tiny_lm, small_toolset, tiny_model_dir, no_unpickling):
    from toolken_agent import ChatToolken

    toolkens, path = saved
    assert torch.equal(Toolkens.load(path, small_toolset, lm=tiny_lm).logits(IDS), toolkens.logits(IDS))
    llm = ChatToolken(model=str(tiny_model_dir), toolkens=str(path), dtype="float32", max_tokens=2)
    assert llm.bind_tools(list(small_toolset.specs)).invoke("hello").usage_metadata["output_tokens"] >= 1


class Planted:
    """Unpickling this writes a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("keep_safetensors", [True, False])
def test_a_pickle_planted_in_a_checkpoint_is_never_read(saved, tmp_path, small_toolset, tiny_lm, keep_safetensors):
    _, path = saved
    marker = tmp_path / "pwned"
    for name in ("toolkens.bin", "pytorch_model.bin", "toolkens.pt", "toolkens.pkl"):
        (path / name).write_bytes(pickle.dumps(Planted(marker)))
    if keep_safetensors:
        Toolkens.load(path, small_toolset, lm=tiny_lm)
    else:
        (path / WEIGHTS_FILE).unlink()
        with pytest.raises(CheckpointError, match="is not a toolken checkpoint"):
            Toolkens.load(path, small_toolset, lm=tiny_lm)
    assert not marker.exists()


def test_a_checkpoints_tool_choice_mix_reaches_the_chat_model(tmp_path, tiny_lm, small_toolset, tiny_model_dir):
    from toolken_agent.integrations.langchain import _runtime

    toolkens = Toolkens.from_priors(tiny_lm, small_toolset, prior="lm-head")
    with torch.no_grad():
        toolkens.head.weight.copy_(toolkens.head.weight[[1, 0]])  # trained rows crossed, so the mix matters
        toolkens.head.bias.copy_(torch.tensor([0.3, -0.2]))
        toolkens.head.prior_bias.copy_(torch.tensor([-0.1, 0.4]))
    toolkens.head.mix = 0.25
    path = toolkens.save(tmp_path / "mixed")
    bound = _runtime(str(tiny_model_dir), "float32", str(path)).toolkens(list(small_toolset.specs))
    hidden = torch.randn(4, tiny_lm.hidden_size, generator=torch.Generator().manual_seed(0))
    assert bound.head.mix == 0.25
    assert torch.allclose(bound.head(hidden), toolkens.head(hidden), atol=1e-5)


def test_a_mix_outside_zero_to_one_is_refused_on_load(tmp_path, tiny_lm, small_toolset):
    toolkens = Toolkens.from_priors(tiny_lm, small_toolset, prior="lm-head")
    toolkens.head.mix = 1.5
    with pytest.raises(CheckpointError, match="tool-choice mix of 1.5"):
        load_checkpoint(toolkens.save(tmp_path / "bad"))


def forge(path: Path, **changes) -> None:
    """Rewrite a checkpoint's config with ``changes`` and recompute both hashes, as anyone can."""
    import hashlib

    from safetensors.torch import save_file

    config = json.loads((path / CONFIG_FILE).read_text())
    config.update(changes)
    tensors = load_file(str(path / WEIGHTS_FILE))
    save_file(tensors, str(path / WEIGHTS_FILE), metadata={"config_sha256": checkpoint.config_digest(config)})
    config["weights_sha256"] = hashlib.sha256((path / WEIGHTS_FILE).read_bytes()).hexdigest()
    (path / CONFIG_FILE).write_text(json.dumps(config))


@pytest.mark.parametrize("changes, where", [
    ({"tools": [1, {"name": "weather_now", "fingerprint": "x"}]}, "tools.0: Input should be a valid dictionary"),
    ({"tools": [{"name": "add"}, {"name": "weather_now", "fingerprint": "x"}]}, "tools.0.fingerprint: Field required"),
    ({"hidden_size": "32"}, "hidden_size: Input should be a valid integer"),
    ({"demos": {"add": [{"prompt": 7, "args": {}}]}}, "demos.add.0.prompt: Input should be a valid string"),
    ({"mix": float("nan")}, "mix: Input should be a finite number"),
    ({"toolset": ["evil.py"]}, "toolset: Input should be a valid string"),
])
def test_a_forged_config_with_recomputed_hashes_is_refused_by_its_schema(saved, tiny_lm, small_toolset, changes, where):
    _, path = saved
    forge(path, **changes)
    with pytest.raises(CheckpointError, match=f"is damaged: {where}"):
        Toolkens.load(path, small_toolset, lm=tiny_lm)


def test_a_forged_config_is_one_line_and_exit_2_in_the_cli(saved, tmp_path, tiny_model_dir):
    _, path = saved
    forge(path, tools=[1, 2])
    tools = tmp_path / "mytools.py"
    tools.write_text(TOOLS)
    data = tmp_path / "test.jsonl"
    data.write_text(json.dumps(conversation(1)) + "\n")
    result = runner.invoke(app, ["eval", "--toolkens", str(path), "--tools", str(tools), "--data", str(data),
                                 "--model", str(tiny_model_dir), "--dtype", "float32"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip().count("\n") == 0 and "tools.0: Input should be a valid dictionary" in result.stderr
