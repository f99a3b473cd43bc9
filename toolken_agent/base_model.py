"""Which base model a checkpoint was trained on: recorded at saving, found again at loading.

A model spec says how a model was loaded on one machine (``default``, ``../models/x``);
a checkpoint records what the model *is*, so that a person, the Hub's model card and a
later ``chat`` without ``--model`` can find it: the embedded model by name and GGUF hash,
a GGUF file by name and sha256, a local directory by name and absolute path, a Hub
model by its id. Which weights they are is still checked by the fingerprint
(:func:`toolken_agent.checkpoint.check_model`); this record only says where to look.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pydantic
from typing_extensions import TypedDict

from .atomic import file_sha256
from .errors import CheckpointError
from .store import DEFAULT_MODEL, EMBEDDED_ALIASES, EMBEDDED_GGUF_MEMBER, EMBEDDED_GGUF_SHA256, EMBEDDED_NAME

EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the embedded GGUF is a quantization of


@pydantic.with_config(pydantic.ConfigDict(extra="forbid", strict=True))
class BaseModelRecord(TypedDict):
    """The base model of a checkpoint, as :func:`describe_model` records it."""

    kind: str  # "embedded", "gguf", "directory" or "hub"
    name: str  # the model's name: its Hub id, the directory's name or the GGUF file's name
    path: str  # the absolute path it was loaded from ("" for the embedded model and Hub ids)
    sha256: str  # the GGUF file's sha256 ("" for other kinds)
    hub_id: str  # the Hub repository the weights come from, when known ("" otherwise)


def describe_model(spec: str | None) -> BaseModelRecord:
    """What the model that ``spec`` loads is (see the module docstring)."""
    spec = spec or DEFAULT_MODEL
    if spec in EMBEDDED_ALIASES:
        return BaseModelRecord(kind="embedded", name=Path(EMBEDDED_GGUF_MEMBER).name, path="",
                               sha256=EMBEDDED_GGUF_SHA256, hub_id=EMBEDDED_HUB_ID)
    path = Path(spec).expanduser()
    if spec.endswith(".gguf") and path.is_file():
        real = path.resolve()
        return BaseModelRecord(kind="gguf", name=real.name, path=str(real), sha256=_sha256(str(real), *_stamp(real)),
                               hub_id="")
    if path.is_dir():
        real = path.resolve()
        return BaseModelRecord(kind="directory", name=real.name, path=str(real), sha256="", hub_id="")
    return BaseModelRecord(kind="hub", name=spec, path="", sha256="", hub_id=spec if spec.count("/") == 1 else "")


def model_spec(record: BaseModelRecord) -> str:
    """The spec that loads ``record``'s model (what ``--model`` would be)."""
    if record["kind"] == "embedded":
        return EMBEDDED_NAME
    return record["path"] or record["name"]


def recorded_model(record: BaseModelRecord | None, spec: str, *, where: str) -> str:
    """The spec to load a checkpoint's own model with when the caller names none.

    ``spec`` is the config's ``model`` (all that checkpoints saved before the record
    have). A file or directory that is not on this machine is refused here, naming what
    the checkpoint was trained on: the bare path error said nothing about the checkpoint.
    """
    if record is None:
        return spec
    if record["kind"] == "embedded":
        return DEFAULT_MODEL
    if record["kind"] in ("gguf", "directory") and not os.path.exists(record["path"]):
        what = f"{record['name']} (sha256 {record['sha256']})" if record["sha256"] else record["name"]
        raise CheckpointError(f"{where} was trained on {what}, which is not at {record['path']} here: "
                              "pass --model (model= in Python) with where it is")
    return model_spec(record)


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """A GGUF file's sha256, once per file version per process (model files are hundreds of MB)."""
    return file_sha256(Path(path))
