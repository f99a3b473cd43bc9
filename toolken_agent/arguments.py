"""Schema-constrained decoding of a tool's arguments.

Once the model has picked a toolken, it writes the tool's arguments as one JSON object,
one token at a time. :class:`ArgumentConstraint` masks every token that could not
continue a JSON object valid for the tool's schema, so the text always parses and
validates, and says when the object is complete so decoding stops right after ``}``.

Why llguidance
--------------
It was compared with xgrammar, outlines-core and lm-format-enforcer (the figures, and
where they came from, are in docs/design-notes.md, "Constrained decoding") and chosen
because:

* in the argument-mode prompt (:mod:`toolken_agent.argument_mode`) it gave the most
  calls that parse, validate and carry the right values. Where the grammar forces text
  (``{"title":"``) llguidance allows only the tokenizer's own tokens for it (``{"``
  ``title`` ``":"``), so the tokens the model writes are the ones training renders with
  :func:`~toolken_agent.chat_format.arguments_text`; the others also allow ``{`` ``"``
  ``t`` ``it``..., off the paths the model knows;
* whitespace can be fixed exactly (``,`` and ``:`` separators, keys in schema order),
  because free whitespace lets a small model loop on newlines (``_COMPACT`` below);
* it says when the object is complete (``is_stopped``), right after the ``}``;
* it compiles a schema fastest of the libraries compared, and its per-token mask, though
  not the fastest, is a negligible share of the model's forward pass;
* it is one small wheel with no dependencies.
"""

from __future__ import annotations

import copy
import json
import threading
import warnings
from typing import Any, Mapping

import llguidance
import llguidance.hf
import numpy as np
import torch
from llguidance.numpy import allocate_token_bitmask, apply_token_bitmask_inplace, fill_next_token_bitmask
from transformers import LogitsProcessor

__all__ = ["ArgumentConstraint", "ArgumentGrammar"]

# Compact JSON: a 135M model given free whitespace can loop on newlines and spaces, and
# "," / ":" with no spaces is also what the tokenizer splits into the fewest tokens.
_COMPACT = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}

# Strings without a limit of their own end within this many characters, so that a
# small model cannot ramble through the argument budget and leave the JSON unfinished.
MAX_STRING_CHARS = 200

# Compiled schemas kept per grammar; the oldest goes first beyond this.
MAX_CACHED_SCHEMAS = 512

# Keywords whose values are data, not subschemas: never rewritten.
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples", "example"})


class ArgumentConstraint(LogitsProcessor):
    """Constrains generation to one JSON object matching a tool's argument schema.

    A logits processor (:mod:`toolken_agent.processors`): ``constraint(input_ids, scores)``
    masks what the schema forbids next. Per-request state: use one per generated call and
    do not share it between threads. The usual loop is ``scores = c(ids, scores)``, pick a
    token, ``c.advance(t)``, and stop once ``c.done``.
    """

    def __init__(self, compiled: llguidance.LLMatcher, vocab_size: int):
        """Take ownership of ``compiled``, a matcher in its start state.

        :meth:`ArgumentGrammar.constraint` passes a private copy of a cached matcher, so
        compiling a schema is paid once, not once per call. ``vocab_size`` is the width of
        the model's logits, which may exceed the tokenizer's vocabulary (padding rows are
        never allowed).
        """
        if compiled.is_error():
            raise ValueError(f"argument matcher is in an error state: {compiled.get_error()}")
        self._matcher = compiled
        self._vocab_size = vocab_size
        # llguidance's own bitmask (one bit per token id), filled once per matcher state.
        # Its numpy helpers, not torch's: torch splits these vocab-sized ops over its
        # intra-op threads, which stall when other work holds the cores.
        self._bitmask = allocate_token_bitmask(1, vocab_size)  # (1, ceil(V / 32)) int32
        self._filled = False

    @property
    def vocab_size(self) -> int:
        """Width of the masks: the model's logits width."""
        return self._vocab_size

    def _bits(self) -> np.ndarray:
        if not self._filled:
            fill_next_token_bitmask(self._matcher, self._bitmask)
            self._filled = True
        return self._bitmask

    def allows(self, token_id: int) -> bool:
        """Whether ``token_id`` may come next (one bit of the mask, without building the mask)."""
        return bool((int(self._bits()[0, token_id >> 5]) >> (token_id & 31)) & 1)

    def mask(self) -> torch.Tensor:
        """Bool tensor ``(vocab_size,)`` of the tokens allowed next (a fresh copy).

        Once :attr:`done`, only the tokenizer's EOS token is allowed.
        """
        scores = np.zeros((1, self._vocab_size), dtype=np.float32)
        apply_token_bitmask_inplace(scores, self._bits())
        return torch.from_numpy(np.isfinite(scores[0]))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """``scores`` ``(1, vocab)`` -> a copy with the tokens the schema forbids at ``-inf``.

        ``input_ids`` is not read: the matcher's state comes from :meth:`advance`. Greedy
        or sampled, any choice from the result is a token :meth:`advance` accepts. The
        width must be :attr:`vocab_size`: a mismatch means the constraint was built for
        another model, and masking the wrong ids would silently corrupt the output.
        """
        if scores.dim() != 2 or scores.shape[0] != 1:
            raise ValueError(f"expected scores of shape (1, vocab), got {tuple(scores.shape)}")
        if scores.shape[-1] != self._vocab_size:
            raise ValueError(f"scores have width {scores.shape[-1]}, the constraint was built for {self._vocab_size}")
        masked = scores.detach().to("cpu", torch.float32, copy=True).numpy()
        apply_token_bitmask_inplace(masked, self._bits())
        return torch.from_numpy(masked).to(scores.device, scores.dtype)

    def advance(self, token_id: int) -> None:
        """Accept the chosen token; raises ValueError if it was not allowed.

        A rejected token leaves the state unchanged, so the caller can pick another.
        """
        token_id = int(token_id)
        if not 0 <= token_id < self._vocab_size or not self.allows(token_id):
            raise ValueError(f"token {token_id} is not allowed here by the argument schema")
        if not self._matcher.consume_token(token_id):  # pragma: no cover - the mask said yes
            raise ValueError(f"token {token_id} was rejected: {self._matcher.get_error()}")
        self._filled = False

    @property
    def done(self) -> bool:
        """True once the JSON object is complete (the caller stops).

        The object ends with its closing ``}``: nothing else can follow, so there is no
        need to generate an EOS token.
        """
        return self._matcher.is_stopped() and not self._matcher.is_error()


class ArgumentGrammar:
    """Compiles schemas for one tokenizer, caching compiled schemas by their JSON text.

    Thread-safe: one instance may be shared by all requests; each call to
    :meth:`constraint` returns independent per-request state.
    """

    def __init__(self, tokenizer: Any, vocab_size: int | None = None):
        """Wrap a Hugging Face fast tokenizer (byte-level BPE or other).

        ``vocab_size`` is the model's logits width; it may exceed ``len(tokenizer)`` when
        the embedding matrix is padded, and defaults to the tokenizer's size. Building
        the token trie costs far more than compiling a schema, so build one per tokenizer
        and keep it.
        """
        try:
            self._tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab_size)
        except ValueError as exc:
            raise ValueError(f"cannot constrain decoding with this tokenizer: {exc}") from None
        self.vocab_size: int = vocab_size if vocab_size is not None else self._tokenizer.vocab_size
        if self.vocab_size < len(tokenizer):
            raise ValueError(f"vocab_size {self.vocab_size} is smaller than the tokenizer ({len(tokenizer)} tokens)")
        self._cache: dict[str, llguidance.LLMatcher] = {}
        self._lock = threading.Lock()

    def constraint(self, schema: Mapping[str, Any]) -> ArgumentConstraint:
        """A fresh :class:`ArgumentConstraint` for a tool's JSON argument schema.

        The first call for a schema compiles it; later calls copy the cached start state,
        which is cheaper still. Raises ValueError for a schema that cannot be compiled.
        """
        # Not sort_keys: property order is part of the schema (keys are generated in it).
        key = json.dumps(schema, ensure_ascii=False, separators=(",", ":"), default=str)
        with self._lock:
            template = self._cache.get(key)
        if template is None:
            template = self._compile(schema)  # outside the lock: compiling drops the GIL
            with self._lock:
                if len(self._cache) >= MAX_CACHED_SCHEMAS:  # schemas grounded per request (provenance) keep coming
                    self._cache.pop(next(iter(self._cache)))
                template = self._cache.setdefault(key, template)
        with self._lock:  # copying only reads the template; the lock keeps that obvious
            matcher = template.deep_copy()
        return ArgumentConstraint(matcher, self.vocab_size)

    def _compile(self, schema: Mapping[str, Any]) -> llguidance.LLMatcher:
        prepared = _closed_objects(schema)
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(prepared, overrides=_COMPACT)
        except ValueError as exc:
            raise ValueError(f"not a JSON schema: {exc}") from None
        error = llguidance.LLMatcher.validate_grammar(grammar, self._tokenizer)
        if error:
            # Keywords llguidance does not implement (e.g. "not") are dropped rather than
            # refusing the tool: the caller still validates the parsed arguments.
            lenient = llguidance.LLMatcher.grammar_from_json_schema(prepared, overrides={**_COMPACT, "lenient": True})
            if llguidance.LLMatcher.validate_grammar(lenient, self._tokenizer):
                raise ValueError(f"cannot constrain arguments to this schema: {error}")
            warnings.warn(f"argument schema only partly enforced while decoding: {error}", stacklevel=3)
            grammar = lenient
        matcher = llguidance.LLMatcher(self._tokenizer, grammar, log_level=0)
        if matcher.is_error():  # pragma: no cover - validate_grammar checked it
            raise ValueError(f"cannot constrain arguments to this schema: {matcher.get_error()}")
        return matcher


def _closed_objects(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema with ``additionalProperties: false`` on objects that list properties,
    and a ``maxLength`` on free strings (``MAX_STRING_CHARS``).

    JSON schema allows extra keys by default and llguidance follows it, so a model could
    invent arguments that then reach the tool as unexpected keywords. An explicit
    ``additionalProperties`` is kept. The top level is always an object.
    """
    out = copy.deepcopy(dict(schema))
    out.setdefault("type", "object")
    if out["type"] != "object":
        raise ValueError(f"tool arguments must be a JSON object schema, got type {out['type']!r}")

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "string" and not {"maxLength", "enum", "const", "pattern", "format"} & node.keys():
                node["maxLength"] = MAX_STRING_CHARS
            # An object made of alternatives (anyOf/oneOf) is closed in each; closed itself, no key would be left.
            listed = "properties" in node or (node.get("type") == "object" and not {"anyOf", "oneOf"} & node.keys())
            if listed and "additionalProperties" not in node:
                if "patternProperties" not in node:
                    node["additionalProperties"] = False
            for key, value in node.items():
                if key in _DATA_KEYWORDS or key == "allOf":  # allOf parts must stay open to combine
                    continue
                if key in ("properties", "$defs", "definitions", "patternProperties") and isinstance(value, dict):
                    for sub in value.values():
                        close(sub)
                else:
                    close(value)
        elif isinstance(node, list):
            for item in node:
                close(item)

    close(out)
    return out
