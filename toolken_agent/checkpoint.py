"""Toolken checkpoints: a directory like a PEFT adapter.

::

    my-toolkens/
        toolkens.safetensors   # weight (n_tools, d), prior (n_tools, d), bias and prior_bias (n_tools,), fp32
        toolken_config.json    # model spec + fingerprint, tools + spec hashes, prior, lambda, figures

Only what was trained is saved, never the LM. The directory is written next to its
destination and renamed into place, so a crash or Ctrl-C leaves either the old
checkpoint or the new one, never a mix. Loading uses safetensors (no pickle), checks the
weights' sha256 recorded in the config and the config's sha256 recorded in the weights'
metadata, and refuses a checkpoint made for another model or a changed toolset, saying which.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import CheckpointError
from .head import ToolkenHead
from .tool import ToolSpec

WEIGHTS_FILE = "toolkens.safetensors"
CONFIG_FILE = "toolken_config.json"
FORMAT_VERSION = 1


@dataclass
class ToolkenConfig:
    """Everything a checkpoint needs to explain itself and to refuse misuse."""

    model: str
    model_name: str
    model_fingerprint: str
    hidden_size: int
    tools: list[dict[str, str]]  # [{"name", "fingerprint"}] in toolken order
    prior: str
    lambda_: float
    bias: bool
    training: dict[str, Any] = field(default_factory=dict)
    toolset: str = ""  # where the tools came from (--tools), so `chat` can find them again
    demos: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # argument-mode demonstrations from the data
    mix: float = 1.0  # weight of the trained rows in the tool choice (ToolkenHead.mix)
    format_version: int = FORMAT_VERSION
    weights_sha256: str = ""

    @property
    def tool_names(self) -> list[str]:
        return [t["name"] for t in self.tools]

    @staticmethod
    def tools_of(specs: Sequence[ToolSpec]) -> list[dict[str, str]]:
        return [{"name": s.name, "fingerprint": s.fingerprint} for s in specs]


def save_checkpoint(path: str | Path, head: ToolkenHead, config: ToolkenConfig) -> Path:
    """Write ``head`` and ``config`` to the directory ``path`` atomically."""
    path = Path(path)
    if len(config.tools) != head.n_tools:
        raise ValueError("config lists a different number of tools than the head has")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        tensors = {"weight": head.weight.detach().float().contiguous(), "prior": head.prior.float().contiguous()}
        if head.bias is not None:
            tensors["bias"] = head.bias.detach().float().contiguous()
            tensors["prior_bias"] = head.prior_bias.float().contiguous()
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"config_sha256": config_digest(asdict(config))})
        config.weights_sha256 = _sha256(tmp / WEIGHTS_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2, ensure_ascii=False) + "\n")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _swap_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _swap_into_place(new: Path, target: Path) -> None:
    """Replace directory ``target`` by ``new``; the old one is removed only afterwards.

    A directory cannot be renamed over a non-empty one, so the old checkpoint is moved
    aside first. If anything fails or Ctrl-C arrives between the two renames, the old
    one is moved back: ``target`` is never left missing by an exception.
    """
    if target.exists() and not target.is_dir():
        raise CheckpointError(f"{target} exists and is not a directory")
    old = target.with_name(f".{target.name}.old-{os.getpid()}") if target.exists() else None
    try:
        if old is not None:
            os.replace(target, old)
        os.replace(new, target)
    except BaseException:
        if old is not None and old.exists() and not target.exists():
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path: str | Path) -> tuple[ToolkenHead, ToolkenConfig]:
    """Read a checkpoint directory, verifying it is whole and untampered."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"no toolken checkpoint at {path}")
    config_path, weights_path = path / CONFIG_FILE, path / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise CheckpointError(f"{path} is not a toolken checkpoint (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        raw = json.loads(config_path.read_text())
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError included
        raise CheckpointError(f"{config_path} is damaged: {exc}") from None
    # The version first: a newer release's config may have fields this one does not know.
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if isinstance(version, int) and version != FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {version}; this release reads {FORMAT_VERSION}")
    try:
        config = ToolkenConfig(**raw)
    except TypeError as exc:
        raise CheckpointError(f"{config_path} is damaged: {exc}") from None
    if config.weights_sha256 != _sha256(weights_path):
        raise CheckpointError(f"{weights_path} does not match the hash in {CONFIG_FILE} (truncated or modified)")
    try:
        with safe_open(str(weights_path), framework="pt") as f:
            tensors = {name: f.get_tensor(name) for name in f.keys()}
            recorded = (f.metadata() or {}).get("config_sha256")
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights_path} is damaged: {exc}") from None
    if recorded is not None and recorded != config_digest(raw):  # checkpoints saved before this check record none
        raise CheckpointError(f"{config_path} does not match the hash recorded in {WEIGHTS_FILE} (truncated or modified)")
    weight = tensors.get("weight")
    expected = (len(config.tools), config.hidden_size)
    if weight is None or tuple(weight.shape) != expected or "prior" not in tensors:
        raise CheckpointError(f"{weights_path} does not hold a {expected[0]}x{expected[1]} toolken matrix")
    if config.bias != ("bias" in tensors):
        raise CheckpointError(f"{weights_path} and {CONFIG_FILE} disagree about the bias")
    mix_ok = isinstance(config.mix, (int, float)) and 0.0 <= config.mix <= 1.0
    if not mix_ok or (config.mix < 1.0 and config.bias and "prior_bias" not in tensors):
        raise CheckpointError(f"{path} records a tool-choice mix of {config.mix} it cannot apply")
    head = ToolkenHead(tensors["prior"], bias=config.bias, mix=config.mix)
    with torch.no_grad():
        head.weight.copy_(weight)
        if config.bias:
            head.bias.copy_(tensors["bias"])
            head.prior_bias.copy_(tensors.get("prior_bias", tensors["bias"]))  # older checkpoints: mix 1, unused
    return head, config


def check_model(config: ToolkenConfig, fingerprint: str, hidden_size: int, *, where: str = "checkpoint") -> None:
    """Refuse a checkpoint trained against other weights or another tokenizer."""
    if config.hidden_size != hidden_size or config.model_fingerprint != fingerprint:
        raise CheckpointError(
            f"{where} was trained for model {config.model_name!r} (fingerprint {config.model_fingerprint}); "
            f"the loaded model differs (fingerprint {fingerprint}): pass --model {config.model}"
        )


def check_tools(config: ToolkenConfig, specs: Sequence[ToolSpec], *, where: str = "checkpoint") -> None:
    """Refuse a toolset whose tools changed since training (name, description or schema)."""
    trained = {t["name"]: t["fingerprint"] for t in config.tools}
    for spec in specs:
        if spec.name in trained and trained[spec.name] != spec.fingerprint:
            raise CheckpointError(
                f"tool {spec.name!r} changed since {where} was trained (description or arguments); retrain it"
            )


def config_digest(record: dict[str, Any]) -> str:
    """sha256 of a config's fields other than ``weights_sha256``, as canonical JSON.

    The weights' hash alone left the config unchecked: a flipped byte in a tool's
    fingerprint, the model fingerprint or the argument demonstrations could load
    unnoticed. The digest is stored in the weights file's safetensors metadata (which
    the config's ``weights_sha256`` then covers), so the config keeps its fields and
    earlier releases still read it. Hashing parsed values lets the file be re-indented.
    """
    body = {k: v for k, v in record.items() if k != "weights_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
