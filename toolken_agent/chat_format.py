"""Rendering conversations into token ids, and where a toolken sits in them.

Messages are rendered with the tokenizer's own chat template, so the frozen LM reads
the format it was tuned on. Tool calls and results are rendered as text inside that
template (Hermes/Qwen style, which many chat models know); results go in the template's
tool role when the template knows tools, else in a user turn::

    <|im_start|>assistant\\n<tool_call>\\n{"name": "add", "arguments": {"a":1,"b":2}}\\n</tool_call><|im_end|>
    <|im_start|>user\\n<tool_response>\\n3\\n</tool_response><|im_end|>

**Where the toolken sits.** A call's text starts at ``<tool_call>``. The toolken
replaces it: at the position just before ``<tool_call>`` (the last token of
``<|im_start|>assistant\\n``, or of the assistant's text before the call, or of the
previous call), the training target is the toolken instead of the first token of
``<tool_call>``. When the toolken wins at decode time, the decoder appends
``<tool_call>\\n{"name": "add", "arguments": `` itself and the LM writes only the JSON
arguments, constrained by the tool's schema. Every other token of an assistant's text is
an ordinary target, which teaches the toolkens when *not* to fire; call and argument
tokens are context only.

Each message's content is tokenized on its own (template glue separately), so the
token boundaries at training time are exactly those the decoder produces, and text
inside a message can never smuggle in special tokens such as ``<|im_end|>``.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

from .conversation import Message

CALL_OPEN = "<tool_call>\n"
CALL_CLOSE = "}\n</tool_call>"
CALL_SEPARATOR = "\n"

# A ChatML template for tokenizers that have none (base models).
FALLBACK_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_SENTINEL = "\x00{}\x00"
_SENTINEL_RE = re.compile("\x00(\\d+)\x00")


_ENCODE_LOCK = threading.Lock()
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def encode_ids(tokenizer: Any, text: str, *, split_special_tokens: bool = False) -> list[int]:
    """Token ids of ``text`` without BOS/EOS; safe to call from many threads at once.

    A Hugging Face fast tokenizer keeps ``split_special_tokens`` as state on its shared
    Rust backend and sets it at the start of each call, then encodes with the GIL
    released. A call for message text (special-token strings stay text) and one for
    template glue (they are special tokens) in two threads could each encode with the
    other's setting, so a request could get a different prompt and message text could
    become real special tokens (docs/design-notes.md; tests/test_guarantee_concurrency.py).
    Every encode in the library goes through this lock, which keeps each call's setting
    its own; it costs nothing next to the serialized forward passes.

    Lone surrogates (``"\\ud800"`` in JSON, or a LangChain message cut mid-emoji) cannot
    be encoded as UTF-8 and made the tokenizer raise a bare ``TypeError``; they are read
    as U+FFFD, the replacement character, as a UTF-8 decoder would.
    """
    text = _LONE_SURROGATE.sub("\ufffd", text)
    with _ENCODE_LOCK:
        encoded = tokenizer(text, add_special_tokens=False, split_special_tokens=split_special_tokens)
    return list(encoded["input_ids"])


def call_prefix(name: str, *, first: bool = True) -> str:
    """The text the decoder appends when the toolken for ``name`` fires.

    A second call in the same turn starts on a new line, so the toolken of every call
    sits right after the previous ``</tool_call>``, where a last call has ``<|im_end|>``.
    """
    return ("" if first else CALL_SEPARATOR) + CALL_OPEN + '{"name": ' + json.dumps(name, ensure_ascii=False) + ', "arguments": '


def arguments_text(args: Any) -> str:
    """Arguments as the constrained decoder writes them: compact JSON, non-ASCII kept."""
    return json.dumps(args, ensure_ascii=False, separators=(",", ":"))


def tool_result_text(content: str) -> str:
    """How a tool result is shown when the chat template has no tool role."""
    return f"<tool_response>\n{content}\n</tool_response>"


@dataclass
class Rendered:
    """Token ids of a conversation and the training targets in it.

    ``targets[i]`` is the target for the next token after position
    ``positions[i]``: a vocabulary id, or ``vocab_size + k`` for toolken ``k``.
    ``decisions[i]`` marks the positions where the model decides whether to call a
    tool (turn starts and call starts): the ones tool-selection accuracy is read at.
    """

    input_ids: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    decisions: list[bool] = field(default_factory=list)

    def add(self, ids: Sequence[int], *, train: bool = False) -> None:
        """Append ``ids``; when ``train``, each becomes the target of the position before it."""
        for tok in ids:
            if train and self.input_ids:
                self.positions.append(len(self.input_ids) - 1)
                self.targets.append(int(tok))
                self.decisions.append(False)
            self.input_ids.append(int(tok))

    def add_target(self, target: int, *, decision: bool) -> None:
        """Mark the last position's next-token target (used for toolkens and turn starts)."""
        self.positions.append(len(self.input_ids) - 1)
        self.targets.append(int(target))
        self.decisions.append(decision)


class ChatFormat:
    """Renders :class:`Message` lists for one tokenizer and one ordered toolset."""

    def __init__(self, tokenizer: Any, tool_names: Sequence[str], vocab_size: int):
        self.tokenizer = tokenizer
        self.tool_index = {name: i for i, name in enumerate(tool_names)}
        self.vocab_size = vocab_size
        self.template = getattr(tokenizer, "chat_template", None) or FALLBACK_TEMPLATE
        self.native_tool_role = self._renders_tool_role()
        self._text_cache: dict[str, list[int]] = {}

    # -- tokenization ---------------------------------------------------------------
    def encode_text(self, text: str) -> list[int]:
        """Tokenize message text: special-token strings in it stay plain text."""
        if not text:
            return []
        return encode_ids(self.tokenizer, text, split_special_tokens=True)

    def encode_glue(self, text: str) -> list[int]:
        """Tokenize template text, where ``<|im_start|>`` and friends are special tokens."""
        if text not in self._text_cache:
            self._text_cache[text] = encode_ids(self.tokenizer, text)
        return self._text_cache[text]

    # -- rendering ------------------------------------------------------------------
    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = False, train: bool = False) -> Rendered:
        """Token ids for ``messages``; with ``train``, the targets of every assistant turn."""
        glue, order = self._template_pieces(messages, add_generation_prompt)
        out = Rendered()
        for piece_index, text in enumerate(glue):
            if piece_index > 0:
                message = messages[order[piece_index - 1]]
                self._add_content(out, message, train=train and message.role == "assistant")
            ids = self.encode_glue(text)
            previous = messages[order[piece_index - 1]] if piece_index > 0 else None
            if train and previous is not None and previous.role == "assistant" and ids:
                # The token that closes an assistant turn (<|im_end|>) is a target too:
                # after the last call or text, the right move is to stop.
                empty_turn = not previous.content and not previous.tool_calls
                out.add_target(ids[0], decision=empty_turn)
                out.add(ids)
            else:
                out.add(ids)
        return out

    def _add_content(self, out: Rendered, message: Message, *, train: bool) -> None:
        if message.role == "tool":
            text = message.content if self.native_tool_role else tool_result_text(message.content)
            out.add(self.encode_text(text))
            return
        text_ids = self.encode_text(message.content)
        if message.tool_calls and text_ids and not message.content.endswith(("\n", " ")):
            text_ids += self.encode_text(CALL_SEPARATOR)
        if train and text_ids:
            # The first token of the reply is where the model decides not to call.
            out.add_target(text_ids[0], decision=True)
            out.add(text_ids[:1])
            out.add(text_ids[1:], train=True)
        else:
            out.add(text_ids)
        for i, call in enumerate(message.tool_calls):
            if train:
                if call.name not in self.tool_index:
                    raise KeyError(call.name)
                out.add_target(self.vocab_size + self.tool_index[call.name], decision=True)
            # Three segments, as the decoder produces them: the prefix it appends when
            # the toolken fires, the arguments the LM writes, then the close.
            out.add(self.encode_text(call_prefix(call.name, first=i == 0)))
            out.add(self.encode_text(arguments_text(dict(call.args))))
            out.add(self.encode_text(CALL_CLOSE))

    def _template_pieces(self, messages: Sequence[Message], add_generation_prompt: bool) -> tuple[list[str], list[int]]:
        """Render with sentinels for contents; return the template glue between them."""
        dicts = []
        for i, m in enumerate(messages):
            role = m.role if (m.role != "tool" or self.native_tool_role) else "user"
            dicts.append({"role": role, "content": _SENTINEL.format(i)})
        text = self.tokenizer.apply_chat_template(
            dicts, tokenize=False, add_generation_prompt=add_generation_prompt, chat_template=self.template
        )
        parts = _SENTINEL_RE.split(text)
        glue = parts[0::2]
        order = [int(x) for x in parts[1::2]]
        if order != list(range(len(messages))):
            raise ValueError("the chat template reorders or drops message contents; it cannot be used")
        return glue, order

    def _renders_tool_role(self) -> bool:
        """Whether the template was written for tool results (mentions tools and renders them).

        A template that merely passes any role through (SmolLM2's) does not count: a
        model never tuned on a ``tool`` role uses a result more reliably when it comes as
        a ``<tool_response>`` user turn (docs/design-notes.md).
        """
        if "tool" not in (self.template or ""):
            return False
        probe = [{"role": "user", "content": "\x000\x00"}, {"role": "assistant", "content": "\x001\x00"},
                 {"role": "tool", "content": "\x002\x00"}]
        try:
            text = self.tokenizer.apply_chat_template(probe, tokenize=False, chat_template=self.template)
        except Exception:  # templates raise on roles they do not know
            return False
        return "\x002\x00" in text
