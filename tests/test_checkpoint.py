"""Checkpoints round-trip exactly and refuse anything they were not made for."""

from __future__ import annotations

import json

import pytest
import torch

from toolken_agent.checkpoint import CONFIG_FILE, WEIGHTS_FILE
from toolken_agent.errors import CheckpointError
from toolken_agent.tool import Tool
from toolken_agent.toolkens import Toolkens
from toolken_agent.toolset import make_toolset


@pytest.fixture()
def saved(tmp_path, tiny_lm, small_toolset):
    toolkens = Toolkens.from_priors(tiny_lm, small_toolset, prior="lm-head")
    with torch.no_grad():
        toolkens.head.weight.add_(torch.randn_like(toolkens.head.weight))
        toolkens.head.bias.uniform_(-1, 1)
    path = toolkens.save(tmp_path / "ckpt")
    return toolkens, path


def test_saving_then_loading_gives_identical_logits(saved, tiny_lm, small_toolset):
    toolkens, path = saved
    loaded = Toolkens.load(path, small_toolset, lm=tiny_lm)
    ids = torch.tensor([[3, 14, 15, 92, 65]])
    assert torch.equal(loaded.logits(ids), toolkens.logits(ids))
    config = json.loads((path / CONFIG_FILE).read_text())
    assert config["prior"] == "lm-head" and [t["name"] for t in config["tools"]] == ["add", "weather_now"]
    assert config["model_fingerprint"] == tiny_lm.fingerprint


def test_loading_in_another_tool_order_reorders_toolkens(saved, tiny_lm, small_toolset):
    toolkens, path = saved
    reversed_set = make_toolset(list(reversed(small_toolset.specs)))
    loaded = Toolkens.load(path, reversed_set, lm=tiny_lm)
    assert torch.equal(loaded.head.weight, toolkens.head.weight.flip(0))


def test_tampered_or_truncated_weights_are_refused(saved, tiny_lm, small_toolset):
    _, path = saved
    data = (path / WEIGHTS_FILE).read_bytes()
    (path / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or modified"):
        Toolkens.load(path, small_toolset, lm=tiny_lm)


def test_damaged_config_is_refused(saved, tiny_lm, small_toolset):
    _, path = saved
    (path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="damaged"):
        Toolkens.load(path, small_toolset, lm=tiny_lm)


def test_checkpoint_for_another_model_is_refused(saved, small_toolset):
    from conftest import make_tiny_lm

    _, path = saved
    other = make_tiny_lm(seed=1)
    with pytest.raises(CheckpointError, match="trained for model"):
        Toolkens.load(path, small_toolset, lm=other)


def test_changed_or_different_toolset_is_refused(saved, tiny_lm, small_toolset):
    _, path = saved

    class Add(Tool):
        """Add two numbers together, now with a different description."""

        def run(self, a: float, b: float) -> float:
            return a + b

    with pytest.raises(CheckpointError, match="changed since"):
        Toolkens.load(path, make_toolset([Add, small_toolset.specs[1]]), lm=tiny_lm)
    with pytest.raises(CheckpointError, match="different toolset"):
        Toolkens.load(path, make_toolset([small_toolset.specs[0]]), lm=tiny_lm)


def test_saving_over_a_checkpoint_replaces_it_whole(saved, tiny_lm, small_toolset, monkeypatch):
    toolkens, path = saved
    before = (path / WEIGHTS_FILE).read_bytes()
    import toolken_agent.checkpoint as checkpoint

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        toolkens.save(path)
    assert (path / WEIGHTS_FILE).read_bytes() == before
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def test_missing_directory_is_a_clear_error(tmp_path, tiny_lm, small_toolset):
    with pytest.raises(CheckpointError, match="no toolken checkpoint"):
        Toolkens.load(tmp_path / "nope", small_toolset, lm=tiny_lm)
