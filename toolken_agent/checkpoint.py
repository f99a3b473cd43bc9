"""Toolken checkpoints: a directory like a PEFT adapter.

::

    my-toolkens/
        toolkens.safetensors   # weight (n_tools, d), prior (n_tools, d), bias and prior_bias (n_tools,), fp32
        toolken_config.json    # base model + fingerprint, tools + spec hashes, prior, lambda, figures
        README.md              # the model card (toolken_agent.model_card): documentation, never read back

Only what was trained is saved, never the LM. The directory is written next to its
destination and renamed into place, one writer at a time, so a crash, Ctrl-C or a second
process saving to the same place leaves either the old checkpoint or the new one, never
a mix (:mod:`toolken_agent.atomic`); a destination that is a symlink is followed.

A checkpoint is data. Loading reads safetensors (no pickle) and JSON checked against
the config's schema; nothing in it is imported or run, and the tools it was trained for
come from the caller (:meth:`toolken_agent.toolkens.Toolkens.load`). The weights' sha256
recorded in the config and the config's sha256 recorded in the weights' metadata catch
a damaged or half-copied checkpoint; they are unkeyed, so anyone can recompute them and
they say nothing about who made it. A checkpoint made for another model or a changed
toolset is refused, saying which.
"""

from __future__ import annotations

import hashlib
import json
import os
import functools
import shutil
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence, get_type_hints

import pydantic
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from typing_extensions import TypedDict

from .atomic import clean_stale, file_sha256, share_like_dir, swap_into_place, temp_dir, writer_lock
from .base_model import BaseModelRecord
from .errors import CheckpointError
from .gate import CallGate
from .head import ToolkenHead
from .tool import ToolSpec

WEIGHTS_FILE = "toolkens.safetensors"
CONFIG_FILE = "toolken_config.json"
CARD_FILE = "README.md"
FORMAT_VERSION = 1


@pydantic.with_config(pydantic.ConfigDict(extra="forbid", strict=True))
class ToolEntry(TypedDict):
    """One trained tool: its name and the fingerprint of its name, description and schema."""

    name: str
    fingerprint: str


@pydantic.with_config(pydantic.ConfigDict(extra="forbid", strict=True))
class Demo(TypedDict):
    """One argument-mode demonstration from the training data."""

    prompt: str
    args: dict[str, Any]


@dataclass
class ToolkenConfig:
    """Everything a checkpoint needs to explain itself and to refuse misuse."""

    model: str
    model_name: str
    model_fingerprint: str
    hidden_size: int
    tools: list[ToolEntry]  # in toolken order
    prior: str
    lambda_: float
    bias: bool
    training: dict[str, Any] = field(default_factory=dict)
    toolset: str = ""  # where the tools came from (--tools), so `chat` can find them again
    demos: dict[str, list[Demo]] = field(default_factory=dict)  # argument-mode demonstrations from the data
    mix: float = 1.0  # weight of the trained rows in the tool choice (ToolkenHead.mix)
    call_threshold: float | None = None  # the gate's threshold when the checkpoint has a gate (toolken_agent.gate)
    base_model: BaseModelRecord | None = None  # what `model` is (toolken_agent.base_model); None before it was recorded
    format_version: int = FORMAT_VERSION
    weights_sha256: str = ""

    @property
    def tool_names(self) -> list[str]:
        return [t["name"] for t in self.tools]

    @staticmethod
    def tools_of(specs: Sequence[ToolSpec]) -> list[ToolEntry]:
        return [{"name": s.name, "fingerprint": s.fingerprint} for s in specs]


def save_checkpoint(path: str | Path, head: ToolkenHead, config: ToolkenConfig, *, card: str | None = None) -> Path:
    """Write ``head``, ``config`` and a model card to the directory ``path`` atomically; return where they went.

    ``card``: the ``README.md`` text; by default one is made from ``config`` alone
    (:func:`toolken_agent.model_card.card_text`, without the tools' descriptions).

    Writers of one place take turns; what a killed writer left beside ``path`` is
    cleaned up first. Refuses to replace a file or a directory that is not a checkpoint.
    Disk errors (a full disk, a read-only mount) raise ``OSError`` and leave nothing behind.
    """
    path = output_path(path)
    if len(config.tools) != head.n_tools:
        raise ValueError("config lists a different number of tools than the head has")
    path.parent.mkdir(parents=True, exist_ok=True)
    with writer_lock(path.parent):
        clean_stale(path)
        check_replaceable(path)
        _write_into_place(path, head, config, card)
    return path


def _write_into_place(path: Path, head: ToolkenHead, config: ToolkenConfig, card: str | None) -> None:
    """Write the checkpoint into a new directory beside ``path``, then swap it in."""
    tmp = temp_dir(path)
    try:
        tensors = {"weight": head.weight.detach().float().contiguous(), "prior": head.prior.float().contiguous()}
        if head.bias is not None:
            tensors["bias"] = head.bias.detach().float().contiguous()
            tensors["prior_bias"] = head.prior_bias.float().contiguous()
        if head.gate is not None:
            tensors.update({k: v.contiguous() for k, v in head.gate.tensors().items()})
        try:
            save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"config_sha256": config_digest(asdict(config))})
        except SafetensorError as exc:  # safetensors reports a full disk this way
            raise OSError(f"cannot write {tmp / WEIGHTS_FILE}: {exc}") from None
        config.weights_sha256 = file_sha256(tmp / WEIGHTS_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2, ensure_ascii=False) + "\n")
        if card is None:
            from .model_card import card_text

            card = card_text(config, ref=path.name)
        (tmp / CARD_FILE).write_text(card, encoding="utf-8")
        share_like_dir(tmp)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        swap_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def output_path(path: str | Path) -> Path:
    """Where saving to ``path`` writes: ``path`` itself, or the target of the symlink ``path``.

    The link is followed, not replaced: replacing it turned the user's link into a
    directory and left the moved-aside link beside it.
    """
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    if path.name in ("", ".", ".."):
        raise CheckpointError(f"{str(path)!r} names no directory to save to; name one, such as toolkens-mine")
    return path


def check_replaceable(path: Path) -> None:
    """Refuse to replace a file, or a directory holding something other than a checkpoint."""
    if os.path.lexists(path) and not path.is_dir():
        raise CheckpointError(f"{path} exists and is not a directory")
    if path.is_dir() and not (path / CONFIG_FILE).is_file() and any(path.iterdir()):
        raise CheckpointError(f"{path} is a directory that holds no toolken checkpoint; not replacing it "
                              "(save somewhere else)")


def check_output(path: str | Path) -> Path:
    """Check, before any training, that a checkpoint can be saved at ``path``; return where it will go.

    Checked up front because an unusable destination (a file, ``.``, a read-only mount)
    used to be refused only after the training it was meant to keep. A directory is
    created and removed where the checkpoint's parent is (or will be), so the answer is
    the filesystem's own. A full disk can still only show when saving.
    """
    target = output_path(path)
    check_replaceable(target)
    existing = target.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise CheckpointError(f"cannot save to {target}: {existing} is not a directory")
    try:
        os.rmdir(temp_dir(existing / target.name))
    except OSError as exc:
        raise CheckpointError(f"cannot save to {target}: {exc.strerror or exc}") from None
    return target


def holds_finished_run(path: str | Path) -> bool:
    """Whether ``path`` holds a checkpoint not marked as interrupted (an unreadable one counts as finished)."""
    config_path = Path(os.path.realpath(path)) / CONFIG_FILE
    if not config_path.is_file():
        return False
    try:
        raw = json.loads(config_path.read_text())
        return raw.get("training", {}).get("interrupted") is not True
    except (OSError, ValueError, AttributeError, RecursionError):
        return True


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
    config = parse_config(raw, where=config_path)
    if config.weights_sha256 != file_sha256(weights_path):
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
    if config.call_threshold is not None:
        head.gate = _load_gate(tensors, config, where=str(path))
    return head, config


def _load_gate(tensors: dict[str, torch.Tensor], config: ToolkenConfig, *, where: str) -> CallGate:
    threshold = config.call_threshold
    names = ("gate_weight", "gate_margin_weight", "gate_bias", "gate_mean", "gate_scale")
    if not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0 or any(n not in tensors for n in names):
        raise CheckpointError(f"{where} records a call gate (threshold {threshold!r}) it does not hold whole")
    if any(tuple(tensors[n].shape) != (config.hidden_size,) for n in ("gate_weight", "gate_mean", "gate_scale")):
        raise CheckpointError(f"{where} holds a call gate of the wrong size")
    if ("gate_anchors" in tensors) != ("gate_radius" in tensors) or (
            "gate_anchors" in tensors and (tensors["gate_anchors"].ndim != 2
                                           or tensors["gate_anchors"].shape[1] != len(config.tools)
                                           or tensors["gate_radius"].numel() != 1
                                           or not torch.isfinite(tensors["gate_radius"]).all())):
        raise CheckpointError(f"{where} holds a call gate whose reach is damaged")
    return CallGate.from_tensors(tensors, float(threshold))


def parse_config(raw: Any, *, where: Path) -> ToolkenConfig:
    """A config's parsed JSON checked against the fields and types of :class:`ToolkenConfig`.

    Not taken on trust: the hashes are unkeyed, and a config forged with ``"tools": [1]``
    and recomputed hashes raised TypeError deep in :func:`check_tools`.
    """
    try:
        record = _config_schema().model_validate(raw)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "the top level"
        raise CheckpointError(f"{where} is damaged: {loc}: {first['msg']}") from None
    config = ToolkenConfig(**{f.name: getattr(record, f.name) for f in fields(ToolkenConfig)})
    if len(set(config.tool_names)) != len(config.tools):
        raise CheckpointError(f"{where} is damaged: it lists a tool twice")
    return config


@functools.cache
def _config_schema() -> type[pydantic.BaseModel]:
    """A strict pydantic model of :class:`ToolkenConfig`'s fields, built from the dataclass so the two cannot drift."""
    hints = get_type_hints(ToolkenConfig)
    specs: dict[str, Any] = {}
    for f in fields(ToolkenConfig):
        if f.default is not MISSING:
            specs[f.name] = (hints[f.name], f.default)
        elif f.default_factory is not MISSING:
            specs[f.name] = (hints[f.name], pydantic.Field(default_factory=f.default_factory))
        else:
            specs[f.name] = (hints[f.name], ...)
    config = pydantic.ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, protected_namespaces=())
    return pydantic.create_model("ToolkenConfigRecord", __config__=config, **specs)


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


