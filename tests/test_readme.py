"""README's "Train from Python" block runs as written (on the tiny model) and trains as `train` does."""

from __future__ import annotations

import re
from pathlib import Path

import toolken_agent.model
from toolken_agent.checkpoint import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE

README = Path(__file__).parent.parent / "README.md"


def python_block(section: str) -> str:
    """The first ```python block under the README heading ``section``."""
    text = README.read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", body, re.S).group(1)


def test_the_train_from_python_block_runs_and_round_trips(tiny_lm, tmp_path, monkeypatch, capsys):
    """The block verbatim; only ``load_model()`` gives the tiny model, so it runs in seconds."""
    monkeypatch.setattr(toolken_agent.model, "load_model", lambda *args, **kwargs: tiny_lm)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(python_block("Train from Python"), str(README), "exec"), namespace)  # our own README, not model output
    report, loaded = namespace["report"], namespace["toolkens"]
    assert report.lambda_sweep and report.heldout and report.gate  # train's defaults: lambda swept, the call gate fitted
    assert any(not c.messages[-1].tool_calls and len(c.messages) == 2 for c in namespace["conversations"])  # no-tool requests
    assert sorted(p.name for p in (tmp_path / "toolkens-math").iterdir()) == sorted([CARD_FILE, CONFIG_FILE, WEIGHTS_FILE])
    assert loaded.training == report.as_dict() and loaded.lambda_ == report.lambda_
    assert str(report.as_dict()["heldout"]) in capsys.readouterr().out


def test_readmes_training_times_say_on_which_cpu_and_dtype_they_hold():
    """A wall time means little without the CPU and dtype: fp32 on a CPU without bf16 took 5x the 'about a minute'."""
    text = README.read_text()
    quick_start = text.split("## Quick start\n", 1)[1].split("```", 1)[0]
    measured = text.split("## Measured so far\n", 1)[1].split("|", 1)[0]
    for where, paragraph in (("Quick start", quick_start), ("Measured so far", measured)):
        flat = " ".join(paragraph.split())
        assert re.search(r"\b(Intel|AMD|Apple|ARM)\b", flat), f"{where} names no CPU"
        assert re.search(r"\b(bf16|fp32|fp16)\b", flat), f"{where} names no dtype"
        assert re.search(r"\b\d+ cores\b", flat), f"{where} names no core count"
