"""The frozen language model on transformers: load it once, freeze it in one place.

Where the weights come from (the embedded default, a GGUF converted to safetensors, a
model directory or hub id) is :mod:`toolken_agent.store`'s job; this module computes.
:class:`FrozenLM` is the transformers implementation of the engine seam
(:mod:`toolken_agent.engine`).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError

from .errors import ModelError
from .store import DEFAULT_MODEL, resolve_model


@dataclass
class FrozenLM:
    """A loaded causal LM with its tokenizer, frozen: nothing in it ever trains.

    ``hidden_states`` gives the final hidden states (after the last norm), the only
    thing the toolken head reads; ``vocab_logits`` turns them into vocabulary logits in
    fp32, because bf16 rounding of the logits is enough to flip a toolken's fire-or-not
    decision.
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
        """Identifies the weights and tokenizer a checkpoint was trained against.

        Hashes the architecture, the vocabulary, and a strided sample of the output
        embedding rounded to bf16, so loading the same weights in fp32 or bf16 gives
        the same fingerprint while another model (or a retokenized one) does not.
        """
        if self._fingerprint is None:
            h = hashlib.sha256()
            cfg = self.model.config
            arch = {k: getattr(cfg, k, None) for k in ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")}
            h.update(json.dumps(arch, sort_keys=True).encode())
            vocab = sorted(self.tokenizer.get_vocab().items())
            h.update(json.dumps(vocab, ensure_ascii=False).encode())
            rows = self.lm_head.weight.detach()[::97].to(torch.bfloat16).view(torch.int16)
            h.update(rows.cpu().numpy().tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint


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


_LOADED: dict[tuple[str, torch.dtype, str], FrozenLM] = {}
_LOAD_LOCK = threading.Lock()


def load_model(spec: str | None = None, *, dtype: str | torch.dtype | None = "auto", device: str | None = None) -> FrozenLM:
    """Load (once per process) and freeze the model named by ``spec``.

    Loading the same spec, dtype and device again returns the same shared instance;
    nothing downstream mutates it.
    """
    spec = spec or DEFAULT_MODEL
    torch_dtype = parse_dtype(dtype)
    dev = device or "cpu"
    key = (spec, torch_dtype, dev)
    with _LOAD_LOCK:
        if key not in _LOADED:
            _LOADED[key] = _load_uncached(spec, torch_dtype, dev)
        return _LOADED[key]


def _load_uncached(spec: str, dtype: torch.dtype, device: str) -> FrozenLM:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    source, name = resolve_model(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except (OSError, ValueError, SafetensorError) as exc:  # SafetensorError: truncated or damaged weights
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load model {spec!r}: {first}") from None
    model.to(device)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return FrozenLM(model=freeze(model), tokenizer=tokenizer, spec=spec, name=name)
