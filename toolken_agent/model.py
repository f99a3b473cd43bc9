"""The frozen language model on transformers: load it once, freeze it in one place.

Where the weights come from (the embedded default, a GGUF converted to safetensors, a
model directory or hub id) is :mod:`toolken_agent.store`'s job; this module computes.
:class:`FrozenLM` is the transformers implementation of the engine seam
(:mod:`toolken_agent.engine`).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from safetensors import SafetensorError

from .engine import ARCH_KEYS, LanguageModel, weights_fingerprint
from .errors import ModelError
from .store import DEFAULT_MODEL, EMBEDDED_NAME, is_gguf_spec, resolve_model  # noqa: F401  (the names are imported from here too)


@dataclass
class FrozenLM:
    """A loaded causal LM with its tokenizer, frozen: nothing in it ever trains.

    ``hidden_states`` gives the final hidden states (after the last norm), the only
    thing the toolken head reads; ``vocab_logits`` turns them into vocabulary logits in
    fp32, because bf16 rounding of the logits is enough to flip a toolken's fire-or-not
    decision. It implements :class:`toolken_agent.engine.LanguageModel`; ``model`` and
    ``hidden_states`` (with transformers' keyword arguments) are for transformers-only
    callers such as the benchmarks.
    """

    model: Any
    tokenizer: Any
    spec: str
    name: str
    _fingerprint: str | None = None
    _lm_head_fp32: torch.Tensor | None = None
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    """Serializes forward passes between threads sharing this model."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def hidden_size(self) -> int:
        return int(self.lm_head.weight.shape[1])

    @property
    def context_length(self) -> int | None:
        """Tokens the model attends over (``max_position_embeddings``), when its config says."""
        value = getattr(self.model.config, "max_position_embeddings", None)
        return value if isinstance(value, int) and value > 0 else None

    @property
    def vocab_size(self) -> int:
        """Width of the vocabulary logits (can exceed ``len(tokenizer)``)."""
        return int(self.lm_head.weight.shape[0])

    @property
    def lm_head(self) -> torch.nn.Linear:
        return self.model.get_output_embeddings()

    def lm_head_fp32(self) -> torch.Tensor:
        if self._lm_head_fp32 is None:
            self._lm_head_fp32 = self.lm_head.weight.detach().float()
        return self._lm_head_fp32

    def hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> tuple[torch.Tensor, Any]:
        """Final hidden states ``(B, T, d)`` and the model output (for its KV cache)."""
        decoder = self.model.get_decoder()
        out = decoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return out.last_hidden_state, out

    def vocab_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits in fp32 from final hidden states ``(..., d) -> (..., V)``."""
        if self.dtype == torch.float32:
            return self.lm_head(hidden)
        bias = self.lm_head.bias
        return F.linear(hidden.float(), self.lm_head_fp32(), None if bias is None else bias.float())

    def step_logits(self, hidden: torch.Tensor, *, exact_top: int = 8) -> torch.Tensor:
        """Vocabulary logits ``(V,)`` for one decoding step, as cheap as plain generation.

        The full product runs in the model's dtype (in bf16, that is what keeps a step as
        cheap); the ``exact_top`` best entries are then recomputed in fp32, so the best
        word logit that a toolken must beat is exact, as in training.
        """
        if self.dtype == torch.float32:
            return self.lm_head(hidden)
        logits = self.lm_head(hidden).float()  # (V,)
        top = logits.topk(exact_top).indices
        exact = self.lm_head_fp32()[top] @ hidden.float()
        if self.lm_head.bias is not None:
            exact = exact + self.lm_head.bias[top].float()
        logits[top] = exact
        return logits

    @property
    def fingerprint(self) -> str:
        """Identifies the weights and tokenizer a checkpoint was trained against (:func:`weights_fingerprint`)."""
        if self._fingerprint is None:
            cfg = self.model.config
            arch = {k: getattr(cfg, k, None) for k in ARCH_KEYS}
            self._fingerprint = weights_fingerprint(arch, self.tokenizer, self.lm_head.weight.detach())
        return self._fingerprint

    # -- the engine seam (toolken_agent.engine) ----------------------------------------
    engine = "transformers"

    @property
    def precision(self) -> str:
        return str(self.dtype).replace("torch.", "")

    @property
    def eos_token_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id} if self.tokenizer.eos_token_id is not None else set()
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        return {int(i) for i in ids if i is not None}

    def final_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.hidden_states(input_ids.to(self.device), None if attention_mask is None else attention_mask.to(self.device))[0]

    def new_context(self) -> "TransformersContext":
        return TransformersContext(self)


class TransformersContext:
    """A decoding context on transformers: a ``DynamicCache`` cropped to reuse a common prefix."""

    def __init__(self, lm: FrozenLM):
        self.lm = lm
        self.cache: Any = None
        self.length = 0
        self.hidden: torch.Tensor | None = None  # (d,)

    @torch.inference_mode()
    def feed(self, ids: Sequence[int]) -> torch.Tensor:
        hidden, out = self.lm.hidden_states(torch.tensor([list(ids)], device=self.lm.device), cache=self.cache, use_cache=True)
        self.cache = out.cache if "cache" in out else out.past_key_values
        self.length += len(ids)
        self.hidden = hidden[0, -1]
        return self.hidden

    @torch.inference_mode()
    def logits(self) -> torch.Tensor:
        if self.hidden is None:
            raise RuntimeError("logits() before any token was fed")
        return self.lm.step_logits(self.hidden)

    def keep(self, n: int) -> None:
        if n <= 0 or self.cache is None:
            self.cache, self.length, self.hidden = None, 0, None
        elif n < self.length:
            self.cache.crop(n - self.length)  # transformers 5 crops by a negative count
            self.length, self.hidden = n, None


def freeze(model: Any) -> Any:
    """The one place the LM is frozen: eval mode, no gradients, ever."""
    model.eval()
    model.requires_grad_(False)
    return model


def best_cpu_dtype() -> torch.dtype:
    """bf16 where the CPU has native bf16 matmuls (faster there than fp32), else fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return torch.float32
    return torch.bfloat16 if ("avx512_bf16" in flags or "amx_bf16" in flags) else torch.float32


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return best_cpu_dtype()
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise ModelError(f"unknown dtype {dtype!r} (use auto, float32 or bfloat16)")
    return table[dtype]


ENGINES = ("transformers", "llamacpp", "auto")
_LOADED: dict[tuple[str, torch.dtype, str, str], LanguageModel] = {}
_LOAD_LOCK = threading.Lock()


def load_model(spec: str | None = None, *, dtype: str | torch.dtype | None = "auto", device: str | None = None,
               engine: str | None = None) -> LanguageModel:
    """Load (once per process) and freeze the model named by ``spec``, on one engine.

    ``engine``: ``transformers`` (any model), ``llamacpp`` (a GGUF: a ``.gguf`` path or
    the embedded default; needs the ``[llamacpp]`` extra), or ``auto`` (llama.cpp for a
    GGUF when llama-cpp-python imports, else transformers, silently); ``None`` reads
    ``$TOOLKEN_AGENT_ENGINE`` and falls back to ``auto``. Training wants transformers
    (``toolken-agent train`` asks for it): its batched pass is the fast one
    (docs/engines.md). ``device``: a torch
    device (``cpu``, ``cuda``, ``cuda:1``) or ``auto`` to spread a model larger than one
    device over all of them (transformers' ``device_map="auto"``); ``None`` is this
    process's GPU when there is one (its ``LOCAL_RANK`` under ``accelerate launch``),
    else the CPU. Loading the same spec, dtype, device and engine again returns the same
    shared instance; nothing downstream mutates it.
    """
    spec = spec or DEFAULT_MODEL
    chosen = choose_engine(spec, engine)
    torch_dtype = parse_dtype(dtype)
    dev = device or default_device()
    key = (spec, None, None, chosen) if chosen == "llamacpp" else (spec, torch_dtype, dev, chosen)  # llama.cpp takes neither
    with _LOAD_LOCK:
        if key not in _LOADED:
            if chosen == "llamacpp":
                from .llamacpp import load_llamacpp

                _LOADED[key] = load_llamacpp(spec)
            else:
                _LOADED[key] = _load_uncached(spec, torch_dtype, dev)
        return _LOADED[key]


def choose_engine(spec: str, engine: str | None) -> str:
    """``transformers`` or ``llamacpp`` for ``spec``: see :func:`load_model`."""
    engine = engine or os.environ.get("TOOLKEN_AGENT_ENGINE") or "auto"
    if engine not in ENGINES:
        raise ModelError(f"unknown engine {engine!r} (use {', '.join(ENGINES)})")
    if engine == "transformers":
        return engine
    if not is_gguf_spec(spec):
        if engine == "llamacpp":
            raise ModelError(f"the llama.cpp engine runs GGUF files; {spec} is not one")
        return "transformers"
    if not llama_cpp_imports():
        if engine == "llamacpp":
            raise ModelError("the llama.cpp engine needs llama-cpp-python: pip install 'toolken-agent[llamacpp]'")
        return "transformers"
    return "llamacpp"


def training_model(lm: LanguageModel) -> LanguageModel:
    """The LM whose batched pass caches training features: ``lm`` on transformers; a GGUF
    decoding on llama.cpp trains on the same weights on transformers, whose batched pass
    is the faster one and the one the features were measured against (docs/engines.md)."""
    return lm if lm.engine == "transformers" else load_model(lm.spec, engine="transformers")


def llama_cpp_imports() -> bool:
    """Whether llama-cpp-python is installed and its library loads (a broken build counts as absent)."""
    try:
        import llama_cpp  # noqa: F401
    except (ImportError, OSError, RuntimeError):  # RuntimeError: its shared library failed to load
        return False
    return True


def default_device() -> str:
    """This process's GPU when there is one (``LOCAL_RANK`` under ``accelerate launch``), else ``cpu``."""
    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"


def _load_uncached(spec: str, dtype: torch.dtype, device: str) -> FrozenLM:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    source, name = resolve_model(spec)
    placement = {"device_map": "auto"} if device == "auto" else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **placement)
    except (OSError, ValueError, SafetensorError) as exc:  # SafetensorError: truncated or damaged weights
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load model {spec!r}: {first}") from None
    if not placement:
        try:
            model.to(device)
        except (RuntimeError, AssertionError) as exc:  # no such device, or torch built without CUDA
            raise ModelError(f"cannot put the model on device {device!r}: {str(exc).splitlines()[0]}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return FrozenLM(model=freeze(model), tokenizer=tokenizer, spec=spec, name=name)
