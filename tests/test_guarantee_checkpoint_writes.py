"""Guarantee: saving a checkpoint never loses one, whoever else writes and however a writer dies.

Two processes saving to one place take turns (before, 7 of 400 concurrent saves raised
FileNotFoundError or a false "exists and is not a directory"). A writer killed with
SIGKILL mid-save leaves a whole checkpoint, old or new, and its temporary copies are
removed by the next save (before, they stayed for good). Files get the usual umask,
a symlinked destination is followed rather than replaced, and a destination that is a
file, ``.``, or a directory holding something else is refused before anything is written.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch

from toolken_agent.checkpoint import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, check_output, load_checkpoint, save_checkpoint
from toolken_agent.errors import CheckpointError
from toolken_agent.toolkens import Toolkens

SAVES_PER_PROCESS = 12
KILLS = 3


@pytest.fixture()
def source(tmp_path, tiny_lm, small_toolset) -> Path:
    """A checkpoint to copy from (children load it: they need no model)."""
    toolkens = Toolkens.from_priors(tiny_lm, small_toolset, prior="lm-head")
    return toolkens.save(tmp_path / "source")


def leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def _save_repeatedly(source: str, target: str, times: int, started=None) -> None:
    head, config = load_checkpoint(source)
    if started is not None:
        started.set()
    for i in range(times):
        with torch.no_grad():
            head.weight.add_(1.0)  # every save differs
        save_checkpoint(target, head, config)


def test_two_processes_saving_to_one_place_take_turns_and_lose_nothing(source, tmp_path):
    target = tmp_path / "runs" / "ckpt"
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_save_repeatedly, args=(str(source), str(target), SAVES_PER_PROCESS)) for _ in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
    assert [w.exitcode for w in writers] == [0, 0]  # a traceback in either would make it 1
    load_checkpoint(target)
    assert leftovers(target) == []


def test_what_a_writer_killed_mid_save_left_is_cleaned_by_the_next_save(source, tmp_path):
    target = tmp_path / "runs" / "ckpt"
    save_checkpoint(target, *load_checkpoint(source))
    ctx = multiprocessing.get_context("spawn")
    rng = random.Random(0)
    for _ in range(KILLS):
        started = ctx.Event()
        writer = ctx.Process(target=_save_repeatedly, args=(str(source), str(target), 10_000, started))
        writer.start()
        assert started.wait(60)
        time.sleep(rng.uniform(0.01, 0.2))
        os.kill(writer.pid, signal.SIGKILL)
        writer.join(10)
        print("left by a killed writer:", leftovers(target) or "nothing")
    save_checkpoint(target, *load_checkpoint(source))  # the next save cleans up (and restores, if needed)
    load_checkpoint(target)
    assert leftovers(target) == []


def test_checkpoint_files_follow_the_umask(source, tmp_path):
    old = os.umask(0o002)
    try:
        target = save_checkpoint(tmp_path / "shared", *load_checkpoint(source))
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o775
    assert {f.name: f.stat().st_mode & 0o777 for f in target.iterdir()} == {CONFIG_FILE: 0o664, WEIGHTS_FILE: 0o664,
                                                                                 CARD_FILE: 0o664}


def test_a_symlinked_destination_is_followed_not_replaced(source, tmp_path):
    real = tmp_path / "store" / "ckpt"
    first = save_checkpoint(real, *load_checkpoint(source))
    link = tmp_path / "latest"
    link.symlink_to(real, target_is_directory=True)
    assert save_checkpoint(link, *load_checkpoint(source)) == first.resolve()
    assert link.is_symlink() and (link / CONFIG_FILE).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "source", "store"]
    assert leftovers(real) == []


@pytest.mark.parametrize("kind, message", [
    ("file", "exists and is not a directory"),
    ("other directory", "holds no toolken checkpoint; not replacing it"),
    ("dot", "names no directory to save to"),
])
def test_an_unusable_destination_is_refused_before_anything_is_written(source, tmp_path, monkeypatch, kind, message):
    monkeypatch.chdir(tmp_path)
    if kind == "file":
        (tmp_path / "out").write_text("my notes")
        dest = Path("out")
    elif kind == "other directory":
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "thesis.tex").write_text("years of work")
        dest = Path("out")
    else:
        dest = Path(".")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(CheckpointError, match=message):
        check_output(dest)
    with pytest.raises(CheckpointError, match=message):
        save_checkpoint(dest, *load_checkpoint(source))
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_read_only_parent_is_refused_up_front_with_the_systems_reason(tmp_path, monkeypatch):
    def read_only(path, mode=0o777):
        raise OSError(30, "Read-only file system", str(path))

    monkeypatch.setattr(os, "mkdir", read_only)
    with pytest.raises(CheckpointError, match="cannot save to .*: Read-only file system"):
        check_output(tmp_path / "ckpt")
