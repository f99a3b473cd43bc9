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
With ``DecodeConfig.reply_schema`` (structured output) the reply's words are held to a
JSON schema by the grammar that writes arguments, while toolkens still compete with
them; ``DecodeConfig.deadline`` ends a reply on time.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Iterator, Sequence

import torch
from transformers import LogitsProcessorList

from .argument_mode import argument_messages, shows_own_examples
from .chat_format import CALL_CLOSE, CALL_SEPARATOR, call_prefix
from .choices import CONTENT_FREE, choice_fields, value_starting, values_left
from .conversation import Message, ToolCall
from .executor import run_call
from .memo import memo
from .events import (ArgumentsChunk, CallFinished, CallRefused, CallStarted, Confirm, DecodeConfig, Event,  # noqa: F401
                     Finished, TextChunk, ToolResult)
from .processors import ReplyStartGuard, ResultCopy, ToolChoice
from .provenance import (after_number, call_key, calls_made, choice_order, grounded_choices, grounded_numbers,
                         grounded_strings, mention_order, named_values, number_bound, number_units, numbers_in,
                         numbers_suffice, sources, untraceable)
from .sampling import sample
from .tool import ArgumentsError, ToolSpec, parse_arguments
from .toolkens import Toolkens

_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "</s>")
# Text that imitates a call instead of firing a toolken ends there: calls come from
# toolkens only. Result markup a small model echoes around the result it repeats
# ("<tool_response>\nSunny\n</tool_response>") is dropped from the visible text.
CALL_MARKUP_STOPS = ("<tool_call>",)
ECHOED_MARKUP = ("<tool_response>\n", "\n</tool_response>", "<tool_response>", "</tool_response>")
def brace_openers(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """Ids of the tokens whose text, leading spaces aside, starts with ``{``.

    Only tokens whose raw form can hold ``{`` (or a byte-fallback ``<0x..>``) are
    decoded: decoding a large tokenizer's whole vocabulary would delay the first reply
    after a tool result.
    """
    return memo(tokenizer, f"brace_openers:{vocab_size}", lambda: _tokens_where(
        tokenizer, vocab_size, lambda raw: "{" in raw or raw.startswith("<0x"), lambda text: text.lstrip().startswith("{")))


def fence_openers(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """Ids of the tokens whose text, leading spaces aside, starts with a backtick: the call
    echoed in a code fence (Qwen2.5-Coder wrote ```` ```json {"name": ...} ```` after a result)."""
    return memo(tokenizer, f"fence_openers:{vocab_size}", lambda: _tokens_where(
        tokenizer, vocab_size, lambda raw: "`" in raw, lambda text: text.lstrip().startswith("`")))


def markup_openers(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """Ids of the tokens whose text, leading spaces aside, starts with ``<``: a reply that opens
    with one is almost always the model writing call markup (``<tool_call>``) as text."""
    return memo(tokenizer, f"markup_openers:{vocab_size}", lambda: _tokens_where(
        tokenizer, vocab_size, lambda raw: "<" in raw, lambda text: text.lstrip().startswith("<")))


_BLANK_RAW = set(" \t\n\r\u0120\u010a\u0109\u010d\u2581")  # byte-level BPE and SentencePiece spellings of whitespace


def blank_tokens(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """Ids of the tokens whose text is whitespace only: a reply may not consist of them alone."""
    return memo(tokenizer, f"blank_tokens:{vocab_size}", lambda: _tokens_where(
        tokenizer, vocab_size, lambda raw: set(raw) <= _BLANK_RAW or raw.startswith("<0x"), lambda text: text != "" and not text.strip()))


def _tokens_where(tokenizer: Any, vocab_size: int, raw_may: Callable[[str], bool], text_is: Callable[[str], bool]) -> torch.Tensor:
    raw = tokenizer.convert_ids_to_tokens(list(range(min(vocab_size, len(tokenizer)))))
    candidates = [i for i, r in enumerate(raw) if r is not None and raw_may(r)]
    texts = tokenizer.batch_decode([[i] for i in candidates])
    return torch.tensor([i for i, t in zip(candidates, texts) if text_is(t)], dtype=torch.long)


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


@dataclass
class _State:
    """One request's context: token ids, KV cache, and the last hidden state."""

    ids: list[int] = field(default_factory=list)
    context: Any = None  # the engine's DecodeContext (toolken_agent.engine), made at the first feed
    hidden: torch.Tensor | None = None  # (d,)


class Decoder:
    """Generates from a :class:`Toolkens`; safe to share between threads.

    The frozen model is never mutated; each request has its own token ids and KV cache.
    Forward passes are serialized by the model's lock, taken for one forward pass at a
    time (:meth:`_feed`) and never held across a yield: it keeps concurrent results
    identical to sequential ones.
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
        ids = set(self.lm.eos_token_ids)
        vocab = tok.get_vocab()
        ids.update(vocab[t] for t in _END_TOKENS if t in vocab)
        return {i for i in ids if i is not None}

    # -- the model ---------------------------------------------------------------------
    @torch.inference_mode()
    def _feed(self, state: _State, new_ids: Sequence[int]) -> None:
        """Run the LM over ``new_ids`` after the cached context."""
        with self.lm.lock:
            if state.context is None:
                state.context = self.lm.new_context()
            state.hidden = state.context.feed(list(new_ids))
        state.ids.extend(int(i) for i in new_ids)

    def _reset_to(self, state: _State, ids: list[int]) -> None:
        """Make the context ``ids``, reusing the cached common prefix."""
        common = 0
        for a, b in zip(state.ids, ids):
            if a != b:
                break
            common += 1
        common = min(common, len(ids) - 1)  # at least one token to feed for a fresh hidden state
        if state.context is not None and common > 0:
            if len(state.ids) > common:
                state.context.keep(common)
            state.ids = state.ids[:common]
        else:
            if state.context is not None:
                state.context.keep(0)
            state.ids = []
            common = 0
        self._feed(state, ids[common:])

    @torch.inference_mode()
    def _joint_logits(self, state: _State) -> torch.Tensor:
        return torch.cat([state.context.logits(), self.toolkens.head(state.hidden)])  # (V + n,)

    # -- the loop ----------------------------------------------------------------------
    def stream(self, messages: Sequence[Message], config: DecodeConfig = DecodeConfig(), *,
               run_tools: bool = False, confirm: Confirm | None = None) -> Iterator[Event]:
        """Decode a reply to ``messages``; yields events, ending with :class:`Finished`.

        ``confirm`` is asked before a tool that is not declared ``read_only`` runs
        (library mode only); a ``False`` answer gives the model an error result instead.
        """
        messages = list(messages)
        names = self.toolkens.toolset.names
        max_calls = config.max_calls if self.toolkens.calls_after_results else min(config.max_calls, 1)
        state = _State()
        gate = (lambda scores: self._gate_opens(state, scores, config)) if self.toolkens.gate is not None else None
        choice = ToolChoice(config.tool_choice, self.lm.vocab_size, names, max_calls, config.tool_bias,
                            config.calls_anywhere, prior_calls=len(calls_made(messages)),
                            per_turn=config.calls_per_turn, gate=gate)
        run = _Run(config, choice, torch.Generator().manual_seed(config.seed) if config.seed is not None else None,
                   {call_key(c.name, c.args) for c in calls_made(messages)})
        prompt = self.format.render(messages, add_generation_prompt=True).input_ids
        self._feed(state, prompt)
        run.prompt_tokens, run.text_budget = len(prompt), config.max_new_tokens
        while True:  # one assistant turn per iteration
            turn = yield from self._turn(state, messages, run)
            messages.append(Message("assistant", turn.text, tool_calls=tuple(turn.calls)))
            if turn.reason != "tool_calls" or not run_tools:
                yield Finished(turn.reason, run.prompt_tokens, run.completion_tokens, tuple(messages))
                return
            yield from self._run_calls(turn, messages, config, confirm)
            self._reset_to(state, self.format.render(messages, add_generation_prompt=True).input_ids)

    def _turn(self, state: _State, messages: Sequence[Message], run: "_Run") -> Generator[Event, None, "_Turn"]:
        """One assistant turn: text, or calls (each made by a toolken), until the turn ends."""
        config, choice, vocab = run.config, run.choice, self.lm.vocab_size
        choice.new_turn()
        if config.trace_arguments:
            choice.unfit = self._unfit(messages)
        turn = _Turn()
        text = _TextStream(self.lm.tokenizer, tuple(config.stop))
        opening, after_call = self._turn_processors(messages, config, choice, lambda: text.visible)
        shape = self.grammar.constraint(dict(config.reply_schema)) if config.reply_schema is not None else None
        while turn.reason is None:
            if run.expired():
                turn.reason = "timeout"
                break
            ids = torch.tensor([state.ids])
            scores = self._joint_logits(state)[None]  # (1, V + n_tools)
            scores = (after_call if turn.calls else opening)(ids, scores)
            if shape is not None:  # the words only: toolkens still compete with the allowed words
                scores = torch.cat([shape(ids, scores[:, :vocab]), scores[:, vocab:]], dim=-1)
            token = sample(scores[0], temperature=config.temperature, top_p=config.top_p, generator=run.generator)
            if token >= vocab:
                tool = token - vocab
                separate = bool(text.ids) and not text.emitted.endswith(("\n", " "))
                call, error, used = yield from self._call(
                    state, messages, self.toolkens.toolset.names[tool], run, first=not turn.calls, separate=separate,
                    trace=config.trace_arguments and not choice.forced)
                run.completion_tokens += 1 + used
                if error is _TIMED_OUT:
                    turn.reason = "timeout"
                    break
                if error is _REFUSED:
                    choice.refused(tool)
                    continue
                choice.called(tool)
                run.seen.add(call_key(call.name, call.args))
                turn.calls.append(call)
                if error is not None:
                    turn.failed[call.id] = error
                continue
            if turn.calls or token in self.end_ids:
                # After a call only another toolken continues the turn.
                turn.reason = "tool_calls" if turn.calls else "stop"
                break
            choice.wrote_text()
            run.completion_tokens += 1
            run.text_budget -= 1
            if shape is not None:
                shape.advance(token)
            self._feed(state, [token])
            chunk = text.add(token)
            if text.stopped or (shape is not None and shape.done):
                turn.reason = "stop"
            elif run.text_budget <= 0:
                turn.reason = "length"
            if chunk:  # the token that ends the turn on length or a finished schema is part of the reply
                yield TextChunk(chunk)
        rest = text.flush()
        if rest:
            yield TextChunk(rest)
        turn.text = text.emitted
        return turn

    def _turn_processors(self, messages: Sequence[Message], config: DecodeConfig, choice: ToolChoice,
                         reply: Callable[[], str]) -> tuple[LogitsProcessorList, LogitsProcessorList]:
        """The turn's processors before its first call and after one (the reply-start guard only guards a reply).

        ``reply`` gives the turn's visible text so far.
        """
        after_result = bool(messages) and messages[-1].role == "tool"
        copy = self._result_copy(messages, config, reply) if after_result else None
        # A reply held to a schema may open with "{" after a result: that is its answer, not an echo.
        guard = self._reply_start_guard(reply, blank=config.nonempty_reply,
                                        brace=after_result and config.json_echo_guard and config.reply_schema is None)
        after_call = LogitsProcessorList([choice] + ([copy] if copy is not None else []))
        return LogitsProcessorList([*after_call, guard]), after_call

    def _result_copy(self, messages: Sequence[Message], config: DecodeConfig,
                     reply: Callable[[], str]) -> ResultCopy | None:
        """The :class:`ResultCopy` for the results that end ``messages`` (short ones: a reply quotes a value, not a page)."""
        results = []
        for message in reversed(messages):
            if message.role != "tool":
                break
            if not message.content.startswith("Error") and 0 < len(message.content) <= 200:
                results.append(message.content)
        if not results or config.result_copy_bias == 0:
            return None
        encode = self.format.encode_text
        starts = {ids[0] for r in results for text in (r, " " + r) if (ids := encode(text))} - set(self.end_ids)
        continuations = {}
        for result in (r.strip() for r in results) if config.result_continue_bias else ():
            for k in range(1, len(result)):
                following = encode(result[k:])
                if following and following[0] not in self.end_ids:
                    continuations.setdefault(result[:k], following[0])
        return ResultCopy(results, sorted(starts), config.result_copy_bias, reply, continuations,
                          config.result_continue_bias)

    def _unfit(self, messages: Sequence[Message]) -> set[int]:
        """The toolkens whose required number fields outnumber the numbers the conversation wrote."""
        said = {read: sources(messages, results=read) for read in (False, True)}
        written = {read: numbers_in(text, once=False) for read, text in said.items()}
        return {i for i, spec in enumerate(self.toolkens.toolset.specs)
                if not numbers_suffice(spec, written[spec.read_only is True], said[spec.read_only is True])}

    def _gate_opens(self, state: _State, scores: torch.Tensor, config: DecodeConfig) -> bool:
        """Whether the toolkens' gate calls here, from the hidden state and the unprocessed ``scores`` ``(1, V + n)``."""
        gate = self.toolkens.gate
        threshold = config.call_threshold if config.call_threshold is not None else gate.threshold
        vocab, row = self.lm.vocab_size, scores[0]
        return bool(gate.fires(state.hidden, row[vocab:], row[:vocab].max(), threshold=threshold, tool_bias=config.tool_bias))

    def _reply_start_guard(self, reply: Callable[[], str], *, blank: bool, brace: bool) -> ReplyStartGuard:
        """With ``blank``: no end token, whitespace or ``<`` first; with ``brace``: no ``{`` or code fence first."""
        tok, vocab = self.lm.tokenizer, self.lm.vocab_size
        parts = ([torch.tensor(sorted(self.end_ids), dtype=torch.long), blank_tokens(tok, vocab), markup_openers(tok, vocab)]
                 if blank else []) + ([brace_openers(tok, vocab), fence_openers(tok, vocab)] if brace else [])
        return ReplyStartGuard(torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long), reply)

    def _run_calls(self, turn: "_Turn", messages: list[Message], config: DecodeConfig,
                   confirm: Confirm | None) -> Iterator[Event]:
        """Run the turn's calls through the registry and append their results to ``messages``."""
        for call in turn.calls:
            spec = self.toolkens.toolset.get(call.name) if call.name in self.toolkens.toolset.names else None
            if call.id in turn.failed:
                outcome_text, is_error = f"Error: {turn.failed[call.id]}", True
            elif confirm is not None and spec is not None and spec.read_only is not True and not confirm(call, spec):
                outcome_text, is_error = "Error: the user declined to run this tool", True
            else:
                outcome = run_call(self.toolkens.toolset, call.name, call.args, timeout=config.tool_timeout)
                outcome_text, is_error = outcome.content, outcome.is_error
            yield ToolResult(call, outcome_text, is_error)
            messages.append(Message("tool", outcome_text, tool_call_id=call.id, name=call.name))

    def _call(self, state: _State, messages: Sequence[Message], name: str, run: "_Run", *, first: bool,
              separate: bool, trace: bool = True) -> Generator[Event, None, tuple[ToolCall, str | None, int]]:
        """The toolken for ``name`` fired: write its arguments under its schema.

        Returns the call, an error message if the arguments are incomplete (the
        argument budget ran out), :data:`_REFUSED` if the call may not be made (a
        repeat of one already made for this request, or values from nowhere in the
        conversation: :mod:`toolken_agent.provenance`) or :data:`_TIMED_OUT` if the
        reply's deadline passed while the arguments were written, and the number of
        argument tokens. A refused or timed-out call leaves the main context untouched.
        ``trace`` is off for a call the caller forced (``tool_choice`` a name or
        ``required``, structured output): the caller asked for exactly this call, and
        refusing it would break that contract.
        """
        config = run.config
        spec = self.toolkens.toolset.get(name)
        call_id = f"call_{uuid.uuid4().hex[:24]}"
        index = run.next_index()
        yield CallStarted(index, call_id, name)
        written = yield from self._write_arguments(spec, messages, index, run)
        if written.timed_out:  # a half-written call is never emitted
            yield CallRefused(index, ToolCall(name, {}, call_id), "the reply's time ran out while its arguments were written")
            return ToolCall(name, {}, call_id), _TIMED_OUT, len(written.ids)
        text = written.text
        try:
            args = parse_arguments(spec, text)
        except ArgumentsError as exc:
            args, problem = None, f"arguments incomplete or invalid ({exc}): {text[:200]}"
        if args is not None:
            refusal = ("the same call was already made for this request"
                       if call_key(name, args) in run.seen and config.no_repeat_calls else
                       untraceable(spec, args, messages) if trace else None)
            if refusal is not None:
                yield CallRefused(index, ToolCall(name, args, call_id), refusal, raw_arguments=text)
                return ToolCall(name, args, call_id), _REFUSED, len(written.ids)
        # The main context reads the whole call, as in training: prefix, arguments, close.
        prefix = self.format.encode_text((CALL_SEPARATOR if separate else "") + call_prefix(name, first=first))
        self._feed(state, prefix + written.ids + self.format.encode_text(CALL_CLOSE))
        call = ToolCall(name, args if args is not None else {}, call_id)
        yield CallFinished(index, call, error=None if args is not None else problem, raw_arguments=text)
        return call, None if args is not None else problem, len(written.ids)

    def _write_arguments(self, spec: ToolSpec, messages: Sequence[Message], index: int,
                         run: "_Run") -> Generator[ArgumentsChunk, None, "_ArgumentText"]:
        """Argument mode: the LM writes ``spec``'s arguments under its schema, in a short prompt of its own.

        Yields the text as it grows (:class:`ArgumentsChunk`, whose texts add up to what
        is returned); stops when the JSON object closes or the argument budget runs out.
        """
        config = run.config
        arg_state = _State()
        self._feed(arg_state, self.format.render(argument_messages(spec, messages), add_generation_prompt=True).input_ids)
        schema = dict(spec.parameters)
        request = None  # what the user wrote, where argument values are traced to it
        if config.trace_arguments:  # structured output's arguments are the answer: free to hold any value
            if spec.read_only is not True:
                schema = grounded_strings(schema, sources(messages, results=False, normal=False))
            request = sources(messages, results=spec.read_only is True, normal=False)
            schema = grounded_choices(schema, request)
            source = sources(messages, results=spec.read_only is True)
            schema = grounded_numbers(schema, numbers_in(source), number_units(source), order=mention_order(spec))
        calibrated = not shows_own_examples(spec) if config.calibrated_choices is None else config.calibrated_choices
        fields = choice_fields(schema)
        choices = dict(fields)  # the enum fields whose value is yet to open
        order, bound = (choice_order(spec), number_bound(spec)) if request is not None and len(fields) > 1 else ([], [])
        forced: list[int] = []  # the tokens of a chosen enum value, still to write
        constraint = self.grammar.constraint(schema)
        written = _ArgumentText(self.lm.tokenizer)
        while not constraint.done and len(written.ids) < config.max_argument_tokens:
            if run.expired():
                written.timed_out = True
                return written
            opening = value_starting(written.emitted, choices) if choices and not forced else None
            if opening is not None:
                values = choices.pop(opening)
                left = (None if request is None else
                        values_left(opening, fields, named_values(values, request), written.emitted, order,
                                    bound, after_number(values, request)))
                # a field the named values narrowed is chosen unless choices are never scored
                # (then only where one value is left: that one is written unscored)
                if calibrated or (left is not None and (config.calibrated_choices is not False or len(left) == 1)):
                    forced = self._choose_value(spec, opening, left or values, arg_state, run)
            if forced and constraint.allows(forced[0]):
                token = forced.pop(0)
            else:
                forced = []
                scores = constraint(torch.tensor([arg_state.ids]), arg_state.context.logits()[None])  # (1, V)
                token = sample(scores[0], temperature=config.temperature, top_p=config.top_p, generator=run.generator)
            constraint.advance(token)
            delta = written.add(token)
            if not constraint.done:
                self._feed(arg_state, [token])
            if delta:
                yield ArgumentsChunk(index, delta)
        rest = written.flush()
        if rest:
            yield ArgumentsChunk(index, rest)
        return written

    def _choose_value(self, spec: ToolSpec, name: str, values: Sequence[str], arg_state: _State,
                      run: "_Run") -> list[int]:
        """The tokens of the value of field ``name`` whose score the request raised most (:mod:`.choices`).

        A single candidate is written unscored.

        Each value, closed by its quote, is scored after the arguments written so far in the
        request's prompt, and as the first field of the arguments in the same prompt asking
        for nothing (what the field leans to by itself, whatever came before it: the same for
        every request, so kept per prompt). Both prompts share their start, so
        ``arg_state``'s cache serves both; it is left where it was. Empty if the reply's
        deadline passes meanwhile: the value is then written token by token.
        """
        tokenizer, here = self.lm.tokenizer, list(arg_state.ids)
        # each value as JSON writes it after its opening quote: escaped, with the closing quote
        continuations = [tokenizer.encode(json.dumps(value, ensure_ascii=False)[1:], add_special_tokens=False)
                         for value in values]
        if len(values) == 1:
            return continuations[0]
        blank = self.format.render(argument_messages(spec, [Message("user", CONTENT_FREE)]),
                                   add_generation_prompt=True).input_ids
        leaning_prompt = (*blank, *tokenizer.encode("{" + json.dumps(name) + ':"', add_special_tokens=False))
        leanings = memo(self.toolkens, "choice_leanings", dict)  # filled outside the memo's lock
        key = (leaning_prompt, tuple(values))
        scores = self._log_probabilities(arg_state, here, continuations, run)
        if scores is not None and key not in leanings:
            leaning = self._log_probabilities(arg_state, list(leaning_prompt), continuations, run)
            if leaning is not None:
                leanings[key] = leaning
        self._reset_to(arg_state, here)
        if scores is None or key not in leanings:
            return []
        pick = sample(scores - leanings[key], temperature=run.config.temperature, top_p=run.config.top_p,
                      generator=run.generator)
        return continuations[pick]

    @torch.inference_mode()
    def _log_probabilities(self, state: _State, prefix: list[int], continuations: Sequence[list[int]],
                           run: "_Run") -> torch.Tensor | None:
        """The log-probability of each of ``continuations`` after ``prefix``; ``None`` once the deadline passed."""
        totals = []
        for tokens in continuations:
            if run.expired():
                return None
            self._reset_to(state, prefix)
            total = 0.0
            for i, token in enumerate(tokens):
                total += float(torch.log_softmax(state.context.logits().float(), dim=-1)[token])
                if i + 1 < len(tokens):
                    self._feed(state, [token])
            totals.append(total)
        return torch.tensor(totals)


_REFUSED = "refused"  # sentinel error: the call was not made
_TIMED_OUT = "timed out"  # sentinel error: the deadline passed inside the call; the turn ends


@dataclass
class _Run:
    """What one request's turns share: settings, the tool-choice state, counters."""

    config: DecodeConfig
    choice: ToolChoice
    generator: torch.Generator | None
    seen: set[str]  # call_key of every call made for this request
    prompt_tokens: int = 0
    completion_tokens: int = 0
    text_budget: int = 0
    _index: Iterator[int] = field(default_factory=itertools.count)

    def next_index(self) -> int:
        return next(self._index)

    def expired(self) -> bool:
        """Whether the reply's deadline (``DecodeConfig.deadline``) has passed."""
        return self.config.deadline is not None and time.monotonic() >= self.config.deadline


@dataclass
class _Turn:
    text: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # call id -> why its arguments are unusable
    reason: str | None = None


class _ArgumentText:
    """A call's argument text as it grows, in deltas that add up to :attr:`text` exactly.

    A delta is given only where the text so far extends what was given (a partial UTF-8
    character waits for its next token), so a consumer that joins the deltas (LangChain
    merging ``tool_call_chunks``) ends with the text the arguments were parsed from.
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = ""
        self.timed_out = False  # the reply's deadline passed before the arguments closed

    @property
    def text(self) -> str:
        return self.tokenizer.decode(self.ids)

    def add(self, token: int) -> str:
        """Take ``token``; return the text that became certain."""
        self.ids.append(token)
        return self._take(final=False)

    def flush(self) -> str:
        """At the end: the rest, half characters included."""
        return self._take(final=True)

    def _take(self, *, final: bool) -> str:
        text = self.text
        if (final or not text.endswith("\ufffd")) and len(text) > len(self.emitted) and text.startswith(self.emitted):
            delta, self.emitted = text[len(self.emitted):], text
            return delta
        return ""


class _TextStream:
    """A turn's text as it grows: stop strings, echoed markup and half characters held back.

    Only text that can no longer change is emitted: a trailing prefix of a stop string
    or of markup waits for the next tokens, and so does a partial UTF-8 character.
    transformers' ``StopStringCriteria`` does not fit: it says only *that* a sequence
    ends in a stop string, while a streamed reply must also be cut *where* it starts and
    hold back what may become one, which the one text search here gives.
    """

    def __init__(self, tokenizer: Any, stop: tuple[str, ...]):
        self.tokenizer = tokenizer
        self.stops = stop + CALL_MARKUP_STOPS
        self.holdback = max((len(s) for s in stop if s), default=1) - 1  # markup: see safe_prefix
        self.ids: list[int] = []
        self.emitted = ""
        self.stopped = False
        self.visible = ""  # the turn's text so far, markup removed: decoded once per token, in add()

    def add(self, token: int) -> str:
        """Take ``token``; return the text that became safe to show."""
        self.ids.append(token)
        self.visible = text = visible_text(self.tokenizer.decode(self.ids, skip_special_tokens=True), final=False)
        stop_at = _find_stop(text, self.stops)
        if stop_at is not None:
            self.stopped = True
            return ""
        ready = visible_text(safe_prefix(text[: len(text) - self.holdback] if self.holdback else text), final=False)
        if not ready.endswith("\ufffd") and len(ready) > len(self.emitted) and ready.startswith(self.emitted):
            chunk, self.emitted = ready[len(self.emitted):], ready
            return chunk
        return ""

    def flush(self) -> str:
        """At the end of the turn: what was held back, up to the first stop string."""
        if not self.ids:
            return ""
        final = self.visible
        stop_at = _find_stop(final, self.stops)
        final = visible_text(final if stop_at is None else final[:stop_at], final=True)
        if len(final) > len(self.emitted) and final.startswith(self.emitted):
            chunk, self.emitted = final[len(self.emitted):], final
            return chunk
        return ""


def _find_stop(text: str, stops: Sequence[str]) -> int | None:
    hits = [text.find(s) for s in stops if s and s in text]
    return min(hits) if hits else None
