"""Decoding with toolkens: one loop, a KV cache, and ToolkenGPT's mode switch.

At every step the loop compares the vocabulary logits with the toolken logits. While a
word wins, the model writes text. When toolken ``k`` wins, the model is calling tool
``k``: the loop appends ``<tool_call>\\n{"name": "k", "arguments": `` and the LM writes
the arguments under the tool's JSON schema (:mod:`toolken_agent.arguments`), so they
always parse and validate. Then one of two things happens, chosen by the caller:

* ``run_tools=True`` (library and benchmark mode): the tool runs, its result is rendered
  as a tool turn, and decoding continues in a new assistant turn; it may call again, up
  to ``max_calls``.
* ``run_tools=False`` (LangChain mode): the turn ends with the calls; the agent runs the
  tools and sends their results in the next request.

:meth:`Decoder.stream` yields events, so streaming and aggregate callers share it.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Generator, Iterator, Sequence

import torch

from .argument_mode import argument_messages
from .chat_format import CALL_CLOSE, CALL_SEPARATOR, call_prefix
from .conversation import Message, ToolCall
from .executor import DEFAULT_TIMEOUT, run_call
from .processors import ToolChoice, sample
from .tool import ArgumentsError, parse_arguments
from .toolkens import Toolkens

_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "</s>")
# Text that imitates a call instead of firing a toolken ends there: calls come from
# toolkens only. Result markup a small model echoes around the result it repeats
# ("<tool_response>\nSunny\n</tool_response>") is dropped from the visible text.
CALL_MARKUP_STOPS = ("<tool_call>",)
ECHOED_MARKUP = ("<tool_response>\n", "\n</tool_response>", "<tool_response>", "</tool_response>")
# Tokens that open a JSON object: forbidden as a reply's first token right after a tool
# result (DecodeConfig.json_echo_guard), computed once per tokenizer.
_BRACE_OPENERS: dict[int, torch.Tensor] = {}
_BRACE_LOCK = threading.Lock()


def brace_openers(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """Ids of the tokens whose text, leading spaces aside, starts with ``{``.

    Only tokens whose raw form holds ``{`` (or is a byte-fallback ``<0x..>``) are
    decoded: decoding all of Qwen's 151k tokens took 1.35 s on the first reply after a
    tool result, the candidates 0.14 s, with the same ids (SmolLM2 and Qwen checked).
    """
    with _BRACE_LOCK:
        key = id(tokenizer)
        if key not in _BRACE_OPENERS:
            raw = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
            candidates = [i for i, r in enumerate(raw) if r is not None and ("{" in r or r.startswith("<0x"))]
            texts = tokenizer.batch_decode([[i] for i in candidates])
            _BRACE_OPENERS[key] = torch.tensor([i for i, t in zip(candidates, texts) if t.lstrip().startswith("{")],
                                               dtype=torch.long)
        return _BRACE_OPENERS[key]


def safe_prefix(text: str) -> str:
    """The part of ``text`` that cannot change any more: trailing whitespace and a
    trailing ``<...`` that may still become markup are held back while streaming."""
    cut = text.rfind("<")
    if cut >= 0 and any(tag.startswith(text[cut:]) or text[cut:].startswith(tag)
                        for tag in ECHOED_MARKUP + CALL_MARKUP_STOPS if tag.startswith("<")):
        text = text[:cut]
    return text.rstrip()


def visible_text(text: str, *, final: bool) -> str:
    """``text`` without echoed result markup (and, at the end, without half a tag)."""
    for tag in ECHOED_MARKUP:
        text = text.replace(tag, "")
    if final:
        for tag in (t for t in ECHOED_MARKUP + CALL_MARKUP_STOPS if t.startswith("<")):
            for k in range(len(tag) - 1, 0, -1):
                if text.endswith(tag[:k]):
                    text = text[: -k]
                    break
    return text


@dataclass(frozen=True)
class DecodeConfig:
    max_new_tokens: int = 256  # text tokens; call arguments have their own budget
    temperature: float = 0.0  # 0 is greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    tool_choice: str = "auto"
    max_calls: int = 4  # multi-hop limit per request
    max_argument_tokens: int = 256
    tool_bias: float = 0.0  # added to every toolken logit (ToolkenGPT's inference-time bias)
    calls_anywhere: bool = False  # True: a toolken may fire mid-text (ToolkenGPT's inline calls)
    # After a tool result the reply may not open with "{": models trained on native
    # function calling echo the call there as JSON text instead of answering
    # (Qwen2.5-Coder-0.5B: '{"' 15.5 against 'The' 12.7), and a toolken can fire inside
    # the echo where it names a tool. False: such a reply may open with JSON.
    json_echo_guard: bool = True
    tool_timeout: float = DEFAULT_TIMEOUT
    seed: int | None = None


# -- events ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TextChunk:
    text: str


@dataclass(frozen=True)
class CallStarted:
    index: int
    id: str
    name: str


@dataclass(frozen=True)
class ArgumentsChunk:
    index: int
    text: str


@dataclass(frozen=True)
class CallFinished:
    index: int
    call: ToolCall
    error: str | None = None  # set when the arguments did not validate
    raw_arguments: str = ""  # the JSON text the model wrote


@dataclass(frozen=True)
class ToolResult:
    call: ToolCall
    content: str
    is_error: bool


@dataclass(frozen=True)
class Finished:
    reason: str  # "stop", "length", "tool_calls"
    prompt_tokens: int
    completion_tokens: int
    messages: tuple[Message, ...] = ()  # the conversation after this request, calls and results included


Event = TextChunk | CallStarted | ArgumentsChunk | CallFinished | ToolResult | Finished


@dataclass
class _State:
    """One request's context: token ids, KV cache, and the last hidden state."""

    ids: list[int] = field(default_factory=list)
    cache: Any = None
    hidden: torch.Tensor | None = None  # (d,)


class Decoder:
    """Generates from a :class:`Toolkens`; safe to share between threads.

    The frozen model is never mutated; each request has its own token ids and KV cache.
    Forward passes are serialized by the model's lock: on 2 CPU cores interleaving them
    gains nothing, and it keeps concurrent results identical to sequential ones.
    """

    def __init__(self, toolkens: Toolkens, grammar: Any | None = None):
        from .arguments import ArgumentGrammar

        self.toolkens = toolkens
        self.lm = toolkens.lm
        self.format = toolkens.chat_format
        self.grammar = grammar or ArgumentGrammar(self.lm.tokenizer, self.lm.vocab_size)
        self.end_ids = self._end_token_ids()

    def _end_token_ids(self) -> set[int]:
        tok = self.lm.tokenizer
        ids = {tok.eos_token_id} if tok.eos_token_id is not None else set()
        eos = getattr(getattr(self.lm.model, "generation_config", None), "eos_token_id", None)
        ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        vocab = tok.get_vocab()
        ids.update(vocab[t] for t in _END_TOKENS if t in vocab)
        return {i for i in ids if i is not None}

    # -- the model ---------------------------------------------------------------------
    @torch.inference_mode()
    def _feed(self, state: _State, new_ids: Sequence[int]) -> None:
        """Run the LM over ``new_ids`` after the cached context."""
        with self.lm.lock:
            hidden, out = self.lm.hidden_states(
                torch.tensor([list(new_ids)], device=self.lm.device), cache=state.cache, use_cache=True
            )
        state.cache = out.cache if "cache" in out else out.past_key_values
        state.ids.extend(int(i) for i in new_ids)
        state.hidden = hidden[0, -1]

    def _reset_to(self, state: _State, ids: list[int]) -> None:
        """Make the context ``ids``, reusing the cached common prefix."""
        common = 0
        for a, b in zip(state.ids, ids):
            if a != b:
                break
            common += 1
        common = min(common, len(ids) - 1)  # at least one token to feed for a fresh hidden state
        if state.cache is not None and common > 0:
            if len(state.ids) > common:
                state.cache.crop(-(len(state.ids) - common))
            state.ids = state.ids[:common]
        else:
            state.cache, state.ids = None, []
            common = 0
        self._feed(state, ids[common:])

    @torch.inference_mode()
    def _joint_logits(self, state: _State) -> torch.Tensor:
        h = state.hidden
        return torch.cat([self.lm.step_logits(h), self.toolkens.head(h)])  # (V + n,)

    # -- the loop ----------------------------------------------------------------------
    def stream(self, messages: Sequence[Message], config: DecodeConfig = DecodeConfig(), *,
               run_tools: bool = False) -> Iterator[Event]:
        """Decode a reply to ``messages``; yields events, ending with :class:`Finished`."""
        messages = list(messages)
        names = self.toolkens.toolset.names
        vocab = self.lm.vocab_size
        choice = ToolChoice(config.tool_choice, vocab, names, config.max_calls, config.tool_bias, config.calls_anywhere)
        generator = torch.Generator().manual_seed(config.seed) if config.seed is not None else None
        state = _State()
        prompt = self.format.render(messages, add_generation_prompt=True).input_ids
        self._feed(state, prompt)
        prompt_tokens, completion_tokens, text_budget = len(prompt), 0, config.max_new_tokens
        call_counter = itertools.count()
        stops = tuple(config.stop) + CALL_MARKUP_STOPS
        holdback = max((len(s) for s in config.stop if s), default=1) - 1  # markup: see safe_prefix
        while True:  # one assistant turn per iteration
            choice.new_turn()
            text_ids: list[int] = []
            emitted = ""
            calls: list[ToolCall] = []
            failed: dict[str, str] = {}
            reason = None
            after_result = config.json_echo_guard and bool(messages) and messages[-1].role == "tool"
            while reason is None:
                logits = choice.process_logits(state.ids, self._joint_logits(state))
                if after_result and not text_ids and not calls:
                    logits = logits.index_fill(0, brace_openers(self.lm.tokenizer, vocab), float("-inf"))
                token = sample(logits, temperature=config.temperature, top_p=config.top_p, generator=generator)
                if token >= vocab:
                    separate = bool(text_ids) and not emitted.endswith(("\n", " "))
                    call, error, used = yield from self._call(
                        state, messages, names[token - vocab], next(call_counter), first=not calls,
                        separate=separate, config=config, generator=generator)
                    choice.called(token - vocab)
                    completion_tokens += 1 + used
                    calls.append(call)
                    if error is not None:
                        failed[call.id] = error
                    continue
                if calls or token in self.end_ids:
                    # After a call only another toolken continues the turn.
                    reason = "tool_calls" if calls else "stop"
                    break
                text_ids.append(token)
                choice.wrote_text()
                completion_tokens += 1
                text_budget -= 1
                self._feed(state, [token])
                text = visible_text(self.lm.tokenizer.decode(text_ids, skip_special_tokens=True), final=False)
                stop_at = _find_stop(text, stops)
                if stop_at is not None:
                    text, reason = text[:stop_at], "stop"
                elif text_budget <= 0:
                    reason = "length"
                # Hold back what could be the start of a stop string or of markup, and
                # half characters; emit only what extends the text already sent.
                if reason:
                    break  # the flush below sends the rest
                ready = visible_text(safe_prefix(text[: len(text) - holdback] if holdback else text), final=False)
                if not ready.endswith("\ufffd") and len(ready) > len(emitted) and ready.startswith(emitted):
                    yield TextChunk(ready[len(emitted):])
                    emitted = ready
            if text_ids:  # flush what was held back for stop strings
                final = visible_text(self.lm.tokenizer.decode(text_ids, skip_special_tokens=True), final=False)
                stop_at = _find_stop(final, stops)
                final = visible_text(final if stop_at is None else final[:stop_at], final=True)
                if len(final) > len(emitted) and final.startswith(emitted):
                    yield TextChunk(final[len(emitted):])
                    emitted = final
            if reason != "tool_calls" or not run_tools:
                messages.append(Message("assistant", emitted, tool_calls=tuple(calls)))
                yield Finished(reason, prompt_tokens, completion_tokens, tuple(messages))
                return
            messages.append(Message("assistant", emitted, tool_calls=tuple(calls)))
            for call in calls:
                if call.id in failed:
                    outcome_text, is_error = f"Error: {failed[call.id]}", True
                else:
                    outcome = run_call(self.toolkens.toolset, call.name, call.args, timeout=config.tool_timeout)
                    outcome_text, is_error = outcome.content, outcome.is_error
                yield ToolResult(call, outcome_text, is_error)
                messages.append(Message("tool", outcome_text, tool_call_id=call.id, name=call.name))
            self._reset_to(state, self.format.render(messages, add_generation_prompt=True).input_ids)

    def _call(self, state: _State, messages: Sequence[Message], name: str, index: int, *, first: bool,
              separate: bool, config: DecodeConfig, generator: torch.Generator | None,
              ) -> Generator[Event, None, tuple[ToolCall, str | None, int]]:
        """The toolken for ``name`` fired: write its arguments under its schema.

        Returns the call, an error message if the arguments are incomplete (the
        argument budget ran out), and the number of argument tokens.
        """
        spec = self.toolkens.toolset.get(name)
        call_id = f"call_{uuid.uuid4().hex[:24]}"
        yield CallStarted(index, call_id, name)
        # Argument mode: a separate short prompt with the tool's demonstrations.
        arg_state = _State()
        self._feed(arg_state, self.format.render(argument_messages(spec, messages), add_generation_prompt=True).input_ids)
        constraint = self.grammar.constraint(dict(spec.parameters))
        arg_ids: list[int] = []
        emitted = ""
        while not constraint.done and len(arg_ids) < config.max_argument_tokens:
            logits = constraint.process_logits(self.lm.step_logits(arg_state.hidden))
            token = sample(logits, temperature=config.temperature, top_p=config.top_p, generator=generator)
            constraint.advance(token)
            arg_ids.append(token)
            if not constraint.done:
                self._feed(arg_state, [token])
            text = self.lm.tokenizer.decode(arg_ids)
            if not text.endswith("\ufffd") and len(text) > len(emitted):
                yield ArgumentsChunk(index, text[len(emitted):])
                emitted = text
        # The main context reads the whole call, as in training: prefix, arguments, close.
        prefix = self.format.encode_text((CALL_SEPARATOR if separate else "") + call_prefix(name, first=first))
        self._feed(state, prefix + arg_ids + self.format.encode_text(CALL_CLOSE))
        text = self.lm.tokenizer.decode(arg_ids)
        try:
            args = parse_arguments(spec, text)
        except ArgumentsError as exc:
            message = f"arguments incomplete or invalid ({exc}): {text[:200]}"
            call = ToolCall(name, {}, call_id)
            yield CallFinished(index, call, error=message, raw_arguments=text)
            return call, message, len(arg_ids)
        call = ToolCall(name, args, call_id)
        yield CallFinished(index, call, raw_arguments=text)
        return call, None, len(arg_ids)


def _find_stop(text: str, stops: Sequence[str]) -> int | None:
    hits = [text.find(s) for s in stops if s and s in text]
    return min(hits) if hits else None
