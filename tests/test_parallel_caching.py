"""Data-parallel caching: `train` under `accelerate launch` with 2 CPU processes writes the
checkpoint one process writes, and the sharding gives every process one process's features."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from toolken_agent import features as features_module
from toolken_agent import parallel
from toolken_agent.augment import example_conversations
from toolken_agent.chat_format import ChatFormat
from toolken_agent.features import extract_features
from toolken_agent.toolset import load_toolset

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train", "--tools", "math", "--epochs", "3", "--lambda", "0.01", "--dtype", "float32", "--device", "cpu"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    # torchrun gives each of its processes one thread; the single process gets one too, so both runs sum in
    # the same order (the gate's fit is iterative and carries a last-bit difference in a reduction far).
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    return env


def _tensors(checkpoint: Path) -> dict[str, torch.Tensor]:
    found = {}
    for path in sorted(checkpoint.glob("*.safetensors")):
        found.update({f"{path.name}:{k}": v for k, v in load_file(path).items()})
    return found


@pytest.mark.skipif(shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None,
                    reason="accelerate's launcher is not installed beside this Python")
def test_train_under_accelerate_launch_with_two_processes_writes_the_single_process_checkpoint(tiny_model_dir, tmp_path):
    single, shared = tmp_path / "single", tmp_path / "shared"
    model = ["--model", str(tiny_model_dir)]
    one = subprocess.run([sys.executable, "-m", "toolken_agent.cli", *TRAIN, *model, "--out", str(single)],
                         cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    launcher = Path(sys.executable).parent / "accelerate"
    # --multi_gpu is accelerate's name for "launch N processes with torchrun"; without GPUs they share the CPU (gloo).
    two = subprocess.run([str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
                          "-m", "toolken_agent.cli", *TRAIN, *model, "--out", str(shared)],
                         cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("trained 3 epochs") == one.stdout.count("trained 3 epochs") == 1  # one process printed the summary
    a, b = _tensors(single), _tensors(shared)
    assert a and a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
    config_a, config_b = (json.loads((p / "toolken_config.json").read_text()) for p in (single, shared))
    assert config_a["training"]["tokens"] == config_b["training"]["tokens"] > 0  # both counted every shard's tokens
    assert config_a["training"]["heldout"] == config_b["training"]["heldout"]


def test_two_shards_gathered_give_the_features_of_one_process_in_its_order(tiny_lm, monkeypatch):
    toolset = load_toolset("math")
    fmt = ChatFormat(tiny_lm.tokenizer, toolset.names, tiny_lm.vocab_size)
    rendered = [fmt.render(c.messages, train=True) for c in example_conversations(toolset)]
    alone = extract_features(tiny_lm, rendered, max_batch_tokens=256)
    shares = {}
    for rank in (0, 1):  # what each process computes for its shard
        monkeypatch.setattr(features_module, "current_shard", lambda rank=rank: parallel.Shard(rank, 2))
        monkeypatch.setattr(features_module, "gather", lambda local, rank=rank: shares.setdefault(rank, list(local)))
        extract_features(tiny_lm, rendered, max_batch_tokens=256)
    assert shares[0] and shares[1]
    monkeypatch.setattr(features_module, "current_shard", lambda: parallel.Shard(0, 2))
    monkeypatch.setattr(features_module, "gather", lambda local: shares[0] + shares[1])  # as gather_object returns them
    gathered = extract_features(tiny_lm, rendered, max_batch_tokens=256)
    for name in ("hidden", "vocab_lse", "vocab_max", "target_logit", "target", "decision", "example"):
        assert torch.equal(getattr(gathered, name), getattr(alone, name)), name


def test_one_process_is_the_main_shard_of_one():
    shard = parallel.Shard()
    assert shard.is_main and shard.mine(3) == [0, 1, 2]
    assert parallel.Shard(1, 2).mine(5) == [1, 3]
