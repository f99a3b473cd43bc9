"""The engine seam: what the rest of the library needs from a frozen LM, whatever runs it.

Two engines implement it: transformers (:class:`toolken_agent.model.FrozenLM`, any HF
model, CPU or GPU) and llama.cpp (:class:`toolken_agent.llamacpp.LlamaCppLM`, a GGUF
file, for decoding). Everything above this module — features, priors, calibration,
toolkens, decoding, the chat model — reads only these members, so it never knows which
engine runs. Tokenization is always the Hugging Face tokenizer of the model (for a GGUF,
the one converted from the file), so token ids, chat templates and argument grammars
are the same on every engine.

Example::

    lm = load_model("SmolLM2-135M-Instruct.Q4_1.gguf", engine="llamacpp")
    ctx = lm.new_context()
    hidden = ctx.feed(prompt_ids)        # (d,) final hidden state of the last token
    logits = ctx.logits()                # (V,) vocabulary logits at that token
    ctx.keep(len(prompt_ids) - 3)        # drop the last 3 tokens, keep the KV cache before
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any, Protocol, Sequence, runtime_checkable

import torch


@runtime_checkable
class DecodeContext(Protocol):
    """One growing token sequence with its KV cache: what a decoding request steps through."""

    def feed(self, ids: Sequence[int]) -> torch.Tensor:
        """Run ``ids`` after the tokens already fed; the final hidden state ``(d,)`` fp32 of the last one."""
        ...

    def logits(self) -> torch.Tensor:
        """Vocabulary logits ``(V,)`` at the last fed token; the best entries exact in fp32."""
        ...

    def keep(self, n: int) -> None:
        """Forget every token after the first ``n``; the KV cache of those ``n`` is reused."""
        ...


@runtime_checkable
class LanguageModel(Protocol):
    """A loaded, frozen causal LM: nothing in it ever trains."""

    tokenizer: Any  # a Hugging Face tokenizer: chat template, encode, decode
    spec: str  # the model spec it was loaded from
    name: str  # a display name
    lock: threading.RLock  # serializes forward passes between threads sharing the model

    @property
    def engine(self) -> str:
        """``"transformers"`` or ``"llama.cpp"``."""
        ...

    @property
    def precision(self) -> str:
        """What the weights compute in, for people: ``float32``, ``bfloat16``, ``llama.cpp Q4_1``."""
        ...

    @property
    def device(self) -> torch.device:
        """Where input ids go."""
        ...

    @property
    def hidden_size(self) -> int: ...

    @property
    def vocab_size(self) -> int:
        """Width of the vocabulary logits (can exceed ``len(tokenizer)``)."""
        ...

    @property
    def context_length(self) -> int | None: ...

    @property
    def fingerprint(self) -> str:
        """Identifies the weights and tokenizer; the same for every engine running the same weights."""
        ...

    @property
    def eos_token_ids(self) -> set[int]:
        """Token ids the model ends a turn with, as its configuration names them."""
        ...

    def final_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final hidden states ``(B, T, d)`` (after the last norm) of right-padded ``input_ids`` ``(B, T)``."""
        ...

    def vocab_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits in fp32 from final hidden states ``(..., d) -> (..., V)``."""
        ...

    def lm_head_fp32(self) -> torch.Tensor:
        """The output-embedding matrix ``(V, d)`` in fp32: the priors are read from it."""
        ...

    def new_context(self) -> DecodeContext:
        """A fresh decoding context with an empty KV cache."""
        ...


ARCH_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")


def weights_fingerprint(arch: dict[str, Any], tokenizer: Any, output_embeddings: torch.Tensor) -> str:
    """Identifies the weights and tokenizer a checkpoint was trained against, on any engine.

    Hashes the architecture (``ARCH_KEYS`` of the model's config), the vocabulary, and a
    strided sample of the output embedding ``(V, d)`` rounded to bf16, so the same
    weights in fp32, bf16 or read by another engine give the same fingerprint while
    another model (or a retokenized one) does not.
    """
    h = hashlib.sha256()
    h.update(json.dumps({k: arch.get(k) for k in ARCH_KEYS}, sort_keys=True).encode())
    vocab = sorted(tokenizer.get_vocab().items())
    h.update(json.dumps(vocab, ensure_ascii=False).encode())
    rows = output_embeddings[::97].to(torch.bfloat16).view(torch.int16)
    h.update(rows.cpu().numpy().tobytes())
    return h.hexdigest()[:16]
