"""The frozen LM on llama.cpp: a GGUF file decoded by llama-cpp-python, for the ``[llamacpp]`` extra.

The toolken head reads the final hidden state, which llama.cpp gives from its low-level
API only: a context with ``embeddings=True`` and ``pooling_type=NONE`` returns, after
``llama_decode``, both ``llama_get_embeddings_ith`` (the normed hidden state) and
``llama_get_logits_ith`` for the same position. In that mode every token of a batch is an
output, so a multi-token prefill runs with embeddings off (only the logits of its last
token) and the last token alone with them on. (The high-level ``Llama.embed`` with
pooling NONE reads later sequences at the wrong offset: it is not used.)

Tokenizer, configuration and output-embedding matrix come from the store's safetensors
conversion of the same GGUF (:mod:`toolken_agent.store`), so token ids, chat template,
argument grammar, priors and the fingerprint are those of the transformers engine, and a
checkpoint trained there binds here. Each decoding context is one sequence id of a
single llama.cpp context (a unified KV cache), so a context's cache is reused across
turns by removing only the positions after the common prefix.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .engine import weights_fingerprint
from .errors import ModelError
from .store import converted_gguf, gguf_source

SEQUENCES = 8  # decoding contexts holding a KV cache at once; more may live, re-reading their tokens when used
_GGML_LOG_ERROR = 4


def default_threads() -> int:
    """``$TOOLKEN_AGENT_THREADS``, else half the cores: all cores on a busy machine made decoding
    collapse now and then, half never did (issue 15, docs/engines.md)."""
    value = os.environ.get("TOOLKEN_AGENT_THREADS")
    return int(value) if value else max(1, (os.cpu_count() or 2) // 2)


def _quiet_log(level: int, text: bytes, _user: Any) -> None:
    if level == _GGML_LOG_ERROR:
        os.write(2, b"llama.cpp: " + text)


_BACKEND: dict[str, Any] = {}


def _llama() -> Any:
    """The ``llama_cpp`` module, its backend initialized once and its logging reduced to errors."""
    if not _BACKEND:
        try:
            import llama_cpp
        except ImportError:
            raise ModelError("the llama.cpp engine needs llama-cpp-python: pip install 'toolken-agent[llamacpp]'") from None
        llama_cpp.llama_backend_init()
        _BACKEND["log"] = llama_cpp.llama_log_callback(_quiet_log)  # kept alive: llama.cpp holds the pointer
        llama_cpp.llama_log_set(_BACKEND["log"], ctypes.c_void_p(0))
        _BACKEND["lib"] = llama_cpp
    return _BACKEND["lib"]


class LlamaCppLM:
    """A GGUF model on llama.cpp, implementing :class:`toolken_agent.engine.LanguageModel`.

    Loading it sets torch to one intra-op thread for the process (see ``__init__``).
    """

    engine = "llama.cpp"

    def __init__(self, gguf: Path, hf_dir: Path, *, spec: str, name: str, n_ctx: int | None = None,
                 threads: int | None = None, flash_attn: bool = False, extra_buffers: bool = False):
        from safetensors import safe_open
        from transformers import AutoTokenizer

        ll = _llama()
        # Above this engine torch does only small work per token (the head, a clone and a cat
        # of the (V + n) logits); with several torch threads on busy cores those waited on each
        # other for longer than llama.cpp's decode (docs/engines.md): llama.cpp has the cores.
        torch.set_num_threads(1)
        self.spec, self.name, self.gguf = spec, name, gguf
        self.lock = threading.RLock()
        self.tokenizer = AutoTokenizer.from_pretrained(hf_dir)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.config = json.loads((hf_dir / "config.json").read_text())
        generation = hf_dir / "generation_config.json"
        self._generation = json.loads(generation.read_text()) if generation.is_file() else {}
        self._lm_head = _output_embeddings(hf_dir, safe_open, tied=bool(self.config.get("tie_word_embeddings")))
        self._fingerprint: str | None = None
        model_params = ll.llama_model_default_params()
        # Extra CPU buffer types (AMX, repacked weights) are off: a native build's AMX matmul
        # crashed at the first decode on this project's machine (docs/engines.md).
        model_params.use_extra_bufts = extra_buffers
        self.model = ll.llama_model_load_from_file(str(gguf).encode(), model_params)
        if not self.model:
            raise ModelError(f"llama.cpp cannot load {gguf}")
        self._n_vocab = ll.llama_vocab_n_tokens(ll.llama_model_get_vocab(self.model))
        self._n_embd = ll.llama_model_n_embd(self.model)
        if (self._n_vocab, self._n_embd) != tuple(self._lm_head.shape):
            raise ModelError(f"{gguf}: llama.cpp reads {self._n_vocab} x {self._n_embd} output embeddings, "
                             f"its conversion {tuple(self._lm_head.shape)}")
        params = ll.llama_context_default_params()
        train_ctx = ll.llama_model_n_ctx_train(self.model)
        params.n_ctx = n_ctx or min(train_ctx, 16384)
        params.n_batch = params.n_ubatch = 512
        params.n_seq_max = SEQUENCES
        params.kv_unified = True  # sequences share one KV buffer sized n_ctx
        params.embeddings = True
        params.pooling_type = ll.LLAMA_POOLING_TYPE_NONE
        params.flash_attn_type = ll.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else ll.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.threads = threads or default_threads()
        params.n_threads = params.n_threads_batch = self.threads
        self.ctx = ll.llama_init_from_model(self.model, params)
        if not self.ctx:
            raise ModelError(f"llama.cpp cannot make a context for {gguf}")
        self.n_ctx = params.n_ctx
        self.memory = ll.llama_get_memory(self.ctx)
        self._embeddings_on = True
        self._batch = ll.llama_batch_init(params.n_batch, 0, 1)
        self._free = list(range(SEQUENCES))
        self._seq_of: dict[int, int] = {}  # context id -> the sequence holding its KV cache
        self._holders: "OrderedDict[int, weakref.ref[LlamaCppContext]]" = OrderedDict()  # least recently used first
        self._ids = itertools.count()
        desc = ctypes.create_string_buffer(128)
        ll.llama_model_desc(self.model, desc, len(desc))
        self._desc = desc.value.decode(errors="replace")
        weakref.finalize(self, _release, ll, self.model, self.ctx, self._batch)

    # -- what the seam asks for -------------------------------------------------------
    @property
    def precision(self) -> str:
        return f"llama.cpp {self._desc.split()[-1] if self._desc else 'gguf'}"

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def hidden_size(self) -> int:
        return self._n_embd

    @property
    def vocab_size(self) -> int:
        return self._n_vocab

    @property
    def context_length(self) -> int | None:
        value = self.config.get("max_position_embeddings")
        return value if isinstance(value, int) and value > 0 else None

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.config, self.tokenizer, self._lm_head)
        return self._fingerprint

    @property
    def eos_token_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id} if self.tokenizer.eos_token_id is not None else set()
        eos = self._generation.get("eos_token_id")
        ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        return {int(i) for i in ids}

    def lm_head_fp32(self) -> torch.Tensor:
        return self._lm_head

    def vocab_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden.float(), self._lm_head)

    def final_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-token hidden states, one sequence at a time (training features stay on transformers)."""
        out = torch.zeros(input_ids.shape[0], input_ids.shape[1], self._n_embd)
        lengths = attention_mask.sum(dim=1).tolist() if attention_mask is not None else [input_ids.shape[1]] * input_ids.shape[0]
        for row, n in enumerate(lengths):
            ctx = self.new_context()
            try:
                out[row, : int(n)] = ctx.feed_all(input_ids[row, : int(n)].tolist())
            finally:
                ctx.close()
        return out

    def new_context(self) -> "LlamaCppContext":
        return LlamaCppContext(self, next(self._ids))

    # -- sequences: a KV cache each, lent to contexts ---------------------------------
    def _sequence(self, ctx: "LlamaCppContext") -> int:
        """The sequence holding ``ctx``'s KV cache; a free one, else the least recently used
        context's (which re-reads its tokens when used again). Under the lock."""
        seq = self._seq_of.get(ctx.id)
        if seq is not None:
            self._holders.move_to_end(ctx.id)
            return seq
        if self._free:
            seq = self._free.pop()
        else:
            victim_id, victim = self._holders.popitem(last=False)
            seq = self._seq_of.pop(victim_id)
            if (holder := victim()) is not None:
                holder.cached = 0
        self._forget(seq, 0)
        self._seq_of[ctx.id] = seq
        self._holders[ctx.id] = weakref.ref(ctx)
        return seq

    def _release(self, ctx_id: int) -> None:
        with self.lock:
            self._holders.pop(ctx_id, None)
            seq = self._seq_of.pop(ctx_id, None)
            if seq is not None:
                self._free.append(seq)

    # -- llama.cpp calls, always under the lock ---------------------------------------
    def _decode(self, seq: int, start: int, ids: Sequence[int], *, outputs: str) -> None:
        """Decode ``ids`` at positions ``start...`` of sequence ``seq``; ``outputs``: ``last`` or ``all``."""
        ll, batch = _BACKEND["lib"], self._batch
        for lo in range(0, len(ids), 512):
            chunk = ids[lo : lo + 512]
            batch.n_tokens = len(chunk)
            for i, token in enumerate(chunk):
                batch.token[i] = int(token)
                batch.pos[i] = start + lo + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = outputs == "all" or lo + i == len(ids) - 1
            code = ll.llama_decode(self.ctx, batch)
            if code != 0:
                raise ModelError(f"llama.cpp could not decode ({code}): the context of {self.n_ctx} tokens may be full")

    def _set_embeddings(self, on: bool) -> None:
        if self._embeddings_on != on:
            _BACKEND["lib"].llama_set_embeddings(self.ctx, on)
            self._embeddings_on = on

    def _read(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden state ``(d,)`` and vocabulary logits ``(V,)`` of output ``i``, copied out of llama.cpp."""
        ll = _BACKEND["lib"]
        hidden = np.ctypeslib.as_array(ll.llama_get_embeddings_ith(self.ctx, i), shape=(self._n_embd,))
        logits = np.ctypeslib.as_array(ll.llama_get_logits_ith(self.ctx, i), shape=(self._n_vocab,))
        return torch.from_numpy(hidden.copy()), torch.from_numpy(logits.copy())

    def _forget(self, seq: int, start: int) -> None:
        _BACKEND["lib"].llama_memory_seq_rm(self.memory, seq, start, -1)


class LlamaCppContext:
    """One token sequence on the shared llama.cpp context, its KV cache in a sequence lent by the model.

    Any number may live: :data:`SEQUENCES` of them hold a KV cache at once, and one whose
    sequence was lent to another re-reads its tokens (one batched pass) when next fed.
    """

    def __init__(self, lm: LlamaCppLM, ctx_id: int):
        self.lm, self.id = lm, ctx_id
        self.tokens: list[int] = []  # every token fed and kept
        self.cached = 0  # how many of them the KV cache of this context's sequence holds
        self._logits: torch.Tensor | None = None
        self._finalizer = weakref.finalize(self, lm._release, ctx_id)

    def _seq_for(self, ids: list[int]) -> tuple[int, int, list[int]]:
        """``(sequence, start, ids to decode)``: the new ``ids``, after whatever of the tokens the cache lost."""
        seq = self.lm._sequence(self)
        pending = self.tokens[self.cached :] + ids
        return seq, self.cached, pending

    def feed(self, ids: Sequence[int]) -> torch.Tensor:
        ids, lm = list(ids), self.lm
        with lm.lock:
            seq, start, pending = self._seq_for(ids)
            if len(pending) > 1:
                lm._set_embeddings(False)  # a prefill: no per-token outputs but the last logits
                lm._decode(seq, start, pending[:-1], outputs="last")
            lm._set_embeddings(True)
            lm._decode(seq, start + len(pending) - 1, pending[-1:], outputs="last")
            hidden, self._logits = lm._read(-1)
            self.tokens += ids
            self.cached = len(self.tokens)
        return hidden

    def feed_all(self, ids: Sequence[int]) -> torch.Tensor:
        """Hidden states ``(T, d)`` of every token of ``ids`` (a batched pass)."""
        ids, lm = list(ids), self.lm
        rows = []
        with lm.lock:
            seq, start, pending = self._seq_for([])
            if pending:  # tokens the cache lost, read again without outputs
                lm._set_embeddings(False)
                lm._decode(seq, start, pending, outputs="last")
            start = len(self.tokens)
            lm._set_embeddings(True)
            for lo in range(0, len(ids), 512):
                chunk = ids[lo : lo + 512]
                lm._decode(seq, start + lo, chunk, outputs="all")
                rows.extend(lm._read(i)[0] for i in range(len(chunk)))
            self.tokens += ids
            self.cached = len(self.tokens)
        return torch.stack(rows) if rows else torch.zeros(0, lm.hidden_size)

    def logits(self) -> torch.Tensor:
        if self._logits is None:
            raise RuntimeError("logits() before any token was fed")
        return self._logits

    def keep(self, n: int) -> None:
        n = max(n, 0)
        if n < len(self.tokens):
            with self.lm.lock:
                seq = self.lm._seq_of.get(self.id)
                if seq is not None and self.cached > n:
                    self.lm._forget(seq, n)
                self.cached = min(self.cached, n)
                del self.tokens[n:]
            self._logits = None

    def close(self) -> None:
        """Give the sequence back now rather than when this context is collected."""
        self._finalizer()


def _output_embeddings(hf_dir: Path, safe_open: Any, *, tied: bool) -> torch.Tensor:
    """The ``(V, d)`` fp32 output-embedding matrix from a safetensors model directory."""
    names = ("lm_head.weight",) + (("model.embed_tokens.weight",) if tied else ())
    for path in sorted(hf_dir.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for name in names:
                if name in f.keys():
                    return f.get_tensor(name).float()
    raise ModelError(f"{hf_dir} holds no output embeddings ({' or '.join(names)})")


def _release(ll: Any, model: Any, ctx: Any, batch: Any) -> None:
    ll.llama_batch_free(batch)
    ll.llama_free(ctx)
    ll.llama_model_free(model)


def f16_gguf(gguf: Path, *, digest: str | None = None) -> Path:
    """An F16 copy of ``gguf``, made once with ``llama_model_quantize`` (about a second) and
    cached like the store's conversions: written beside its place and renamed in, its
    sha256 checked at every use.

    A quantized GGUF's hidden states on llama.cpp differ from its de-quantized weights on
    transformers (where training features come from); its F16 copy's match them.
    ``digest`` is the GGUF's sha256 when the caller already knows it.
    """
    from .store import cache_dir, cached_directory, gguf_digest

    name = f"{gguf.stem}.F16.gguf"
    target = cache_dir() / "gguf-f16" / f"{gguf.stem}-{(digest or gguf_digest(gguf))[:12]}"
    return cached_directory(target, lambda out: _quantize_f16(gguf, out / name), required=name,
                            source=gguf.name, what="to F16 for llama.cpp (once, ~1 s per 100M weights)") / name


def _quantize_f16(gguf: Path, out: Path) -> None:
    ll = _llama()
    params = ll.llama_model_quantize_default_params()
    params.ftype = ll.LLAMA_FTYPE_MOSTLY_F16
    params.allow_requantize = True
    if ll.llama_model_quantize(str(gguf).encode(), str(out).encode(), ctypes.byref(params)) != 0:
        raise ModelError(f"llama.cpp could not write an F16 copy of {gguf}")


WEIGHTS = ("f16", "as-is")
DEFAULT_WEIGHTS = "f16"  # chosen by selection accuracy across engines (docs/engines.md)
_UNQUANTIZED = {0, 1, 32}  # llama_ftype: ALL_F32, MOSTLY_F16, MOSTLY_BF16


def load_llamacpp(spec: str, *, weights: str | None = None, **options: Any) -> LlamaCppLM:
    """The model named by ``spec`` (a ``.gguf`` path or the embedded default) on llama.cpp.

    ``weights``: ``f16`` decodes an F16 copy of a quantized GGUF (:func:`f16_gguf`), whose
    hidden states are those of the de-quantized weights training read on transformers;
    ``as-is`` decodes the file itself. ``None``: ``$TOOLKEN_AGENT_GGUF_WEIGHTS``, else
    :data:`DEFAULT_WEIGHTS`.
    """
    source = gguf_source(spec)  # the file's sha256 read once, for both caches below
    if source is None:
        raise ModelError(f"the llama.cpp engine runs GGUF files; {spec} is not one")
    gguf, name, digest = source
    weights = weights or os.environ.get("TOOLKEN_AGENT_GGUF_WEIGHTS") or DEFAULT_WEIGHTS
    if weights not in WEIGHTS:
        raise ModelError(f"unknown GGUF weights {weights!r} (use {' or '.join(WEIGHTS)})")
    hf_dir = converted_gguf(gguf, name, digest=digest)
    if weights == "f16" and _file_type(gguf) not in _UNQUANTIZED:
        gguf = f16_gguf(gguf, digest=digest)
    return LlamaCppLM(gguf, hf_dir, spec=spec, name=name, **options)


def _file_type(gguf: Path) -> int | None:
    """The GGUF's ``general.file_type`` (a ``llama_ftype``), read with its vocabulary only."""
    ll = _llama()
    params = ll.llama_model_default_params()
    params.vocab_only = True
    model = ll.llama_model_load_from_file(str(gguf).encode(), params)
    if not model:
        raise ModelError(f"llama.cpp cannot load {gguf}")
    try:
        value = ctypes.create_string_buffer(32)
        found = ll.llama_model_meta_val_str(model, b"general.file_type", value, len(value)) > 0
        return int(value.value) if found and value.value.isdigit() else None
    finally:
        ll.llama_model_free(model)
