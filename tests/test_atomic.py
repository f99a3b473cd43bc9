"""Directories written into place: one writer at a time, the usual umask, dead writers' leftovers cleaned."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from toolken_agent.atomic import clean_stale, share_like_dir, swap_into_place, temp_dir, writer_lock

DEAD_PID = 4_000_000_000  # above any pid_max: no such process


@pytest.fixture()
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_temp_dirs_and_shared_files_follow_the_umask_not_mkdtemps_0700(tmp_path, umask_022):
    made = temp_dir(tmp_path / "ckpt")
    (made / "weights").write_bytes(b"x")
    os.chmod(made / "weights", 0o600)  # as safetensors leaves its file
    share_like_dir(made)
    assert made.stat().st_mode & 0o777 == 0o755
    assert (made / "weights").stat().st_mode & 0o777 == 0o644
    assert made.name.startswith(f".ckpt.tmp-{os.getpid()}-")


def _hold_lock(parent: str, held: multiprocessing.Event, release: multiprocessing.Event) -> None:
    with writer_lock(Path(parent)):
        held.set()
        release.wait(10)


def test_a_second_writer_waits_for_the_first_and_times_out_with_a_clear_error(tmp_path):
    ctx = multiprocessing.get_context("fork")
    held, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path), held, release))
    holder.start()
    try:
        assert held.wait(10)
        waits: list[int] = []
        with pytest.raises(TimeoutError, match="another process has been writing in"):
            with writer_lock(tmp_path, timeout=0.2, on_wait=lambda: waits.append(1)):
                pass
        assert waits == [1]  # told once that it waits
        release.set()
        start = time.perf_counter()
        with writer_lock(tmp_path, timeout=10):
            assert time.perf_counter() - start < 5
    finally:
        release.set()
        holder.join(10)


def test_stale_copies_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    target = tmp_path / "ckpt"
    target.mkdir()
    dead_tmp = tmp_path / f".ckpt.tmp-{DEAD_PID}-abcd1234"
    legacy_tmp = tmp_path / ".ckpt.tmp-x7_k2q9a"  # tempfile.mkdtemp's names carried no pid
    dead_old = tmp_path / f".ckpt.old-{DEAD_PID}"
    live_tmp = tmp_path / f".ckpt.tmp-{os.getppid()}-abcd1234"  # a live process other than this one
    other = tmp_path / f".other.tmp-{DEAD_PID}-abcd1234"  # another checkpoint's: not ours to judge here
    for path in (dead_tmp, legacy_tmp, dead_old, live_tmp, other):
        path.mkdir()
        (path / "weights").write_bytes(b"x" * 100)
    removed = clean_stale(target)
    assert sorted(p.name for p in removed) == sorted(p.name for p in (dead_tmp, legacy_tmp, dead_old))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (target, live_tmp, other))


def test_a_writer_killed_between_its_two_renames_has_its_moved_aside_copy_restored(tmp_path):
    target = tmp_path / "ckpt"
    old = tmp_path / f".ckpt.old-{DEAD_PID}"
    old.mkdir()
    (old / "weights").write_bytes(b"previous")
    (tmp_path / f".ckpt.tmp-{DEAD_PID}-abcd1234").mkdir()  # the new copy, never moved in
    clean_stale(target)
    assert (target / "weights").read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_swapping_replaces_the_old_directory_whole(tmp_path):
    target, new = tmp_path / "ckpt", tmp_path / "new"
    target.mkdir()
    (target / "a").write_text("old")
    new.mkdir()
    (new / "b").write_text("new")
    swap_into_place(new, target)
    assert [p.name for p in target.iterdir()] == ["b"] and [p.name for p in tmp_path.iterdir()] == ["ckpt"]
