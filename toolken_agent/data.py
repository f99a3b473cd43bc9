"""Training and evaluation data: chat-format JSONL, or the tools' own examples.

Each line is ``{"messages": [...]}`` as in OpenAI's chat fine-tuning format, or one of
the public function-calling shapes :mod:`.formats` reads (xLAM/APIGen, ShareGPT with
tool roles). Assistant
turns with ``tool_calls`` are calls, assistant turns without are negatives (the model
should answer in words), ``tool`` turns carry results. Other keys (``tools``,
``parallel_tool_calls``, metadata) are ignored, except that ``answer`` is kept as the
gold final answer for evaluation.

Every problem is an error naming the file and line; with ``lenient=True`` bad lines are
skipped and counted instead. Nothing is dropped silently.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

from .conversation import Conversation, json_problem, parse_messages
from .errors import DataError
from .formats import EXPECTED, as_openai_messages
from .tool import ArgumentsError
from .toolset import Toolset

MAX_LINE_BYTES = 8 << 20  # one conversation; longer lines are almost surely not data

# Requests no math or lookup tool should answer, with short replies: they teach the
# toolkens when not to fire when the training data holds no such request.
NEGATIVE_EXAMPLES = [
    ("Hello!", "Hello! How can I help you today?"),
    ("Hi, how are you?", "I'm doing well, thank you. How can I help?"),
    ("Thanks a lot!", "You're welcome!"),
    ("Tell me a joke.", "Why did the scarecrow win an award? Because he was outstanding in his field."),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet."),
    ("Write a haiku about the sea.", "Waves fold into foam,\nsalt wind carries gull voices,\nthe tide keeps its time."),
    ("Can you help me write an email to my boss?", "Of course. What would you like the email to say?"),
    ("What does the word 'ephemeral' mean?", "Ephemeral means lasting for a very short time."),
    ("Translate 'good morning' into Spanish.", "Good morning in Spanish is 'buenos días'."),
    ("Give me a tip for sleeping better.", "Keep a regular schedule and avoid screens for an hour before bed."),
    ("What color is the sky on a clear day?", "On a clear day the sky is blue."),
    ("Summarize the plot of Cinderella in one sentence.",
     "A kind young woman, mistreated by her stepfamily, attends a royal ball with a fairy godmother's help and wins the prince's heart."),
    ("Goodbye!", "Goodbye! Have a great day."),
    ("What is your name?", "I'm a helpful AI assistant."),
    ("Recommend a good book.", "You might enjoy 'To Kill a Mockingbird' by Harper Lee."),
]


@dataclass
class LoadReport:
    conversations: list[Conversation] = field(default_factory=list)
    skipped: int = 0
    first_errors: list[str] = field(default_factory=list)
    lines: int = 0  # non-blank lines read: always len(conversations) + skipped


def load_jsonl(path: str | Path, toolset: Toolset, *, lenient: bool = False) -> LoadReport:
    """Read OpenAI-format conversations from ``path``, checked against ``toolset``.

    The file is read one line at a time, so its size does not matter; a line longer
    than ``MAX_LINE_BYTES`` is refused without being held in memory.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError("is a directory, not a JSONL file", path=str(path))
    if not path.is_file():
        raise DataError("no such file", path=str(path))
    report = LoadReport()
    try:
        with open(path, "rb") as f:
            for number, raw, size in _read_lines(f, MAX_LINE_BYTES):
                if number == 1 and raw is not None:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark (Windows editors)
                if raw is not None and not raw.strip():
                    continue
                report.lines += 1
                try:
                    if raw is None:
                        raise too_long(size, path=str(path), line=number)
                    report.conversations.append(parse_line(raw, toolset, source=f"{path}:{number}", path=str(path), line=number))
                except DataError as exc:
                    if not lenient:
                        raise
                    report.skipped += 1
                    if len(report.first_errors) < 5:
                        report.first_errors.append(str(exc))
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    if not report.conversations:
        detail = (f" ({report.skipped} bad lines skipped; first: {report.first_errors[0]})" if report.skipped
                  else " (the file is empty)")
        raise DataError("no usable conversations" + detail, path=str(path))
    return report


def _read_lines(f: BinaryIO, limit: int) -> Iterator[tuple[int, bytes | None, int]]:
    """``(number, line, size)`` for each line of ``f``; ``line`` is None when longer than ``limit``.

    Iterating a file reads each line whole, so one multi-gigabyte line (a file without
    newlines, a binary file passed by mistake) would be held in memory before its
    length could be checked. Here a line is read up to ``limit`` bytes and the rest of
    an overlong one is skipped in 1 MiB chunks.
    """
    number = 0
    while raw := f.readline(limit + 1):
        number += 1
        if len(raw) <= limit or raw.endswith(b"\n"):
            yield number, raw, len(raw)
            continue
        size = len(raw)
        while not raw.endswith(b"\n") and (raw := f.readline(1 << 20)):
            size += len(raw)
        yield number, None, size


def too_long(size: int, *, path: str, line: int) -> DataError:
    return DataError(f"line of {size:,} bytes is over the limit of {MAX_LINE_BYTES:,} bytes", path=path, line=line)


def parse_line(raw: bytes, toolset: Toolset, *, source: str, path: str, line: int) -> Conversation:
    """One JSONL line as a checked :class:`Conversation`."""
    if len(raw) > MAX_LINE_BYTES:
        raise too_long(len(raw), path=path, line=line)
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, huge integers, deep nesting
        raise DataError(f"not valid JSON ({json_problem(exc)})", path=path, line=line) from None
    if not isinstance(record, dict):
        raise DataError(EXPECTED, path=path, line=line)
    try:
        messages = parse_messages(as_openai_messages(record))
    except ValueError as exc:
        raise DataError(str(exc), path=path, line=line) from None
    for message in messages:
        for call in message.tool_calls:
            if call.name not in toolset.names:
                raise DataError(f"unknown tool {call.name!r} (the toolset has: {', '.join(toolset.names)})", path=path, line=line)
            try:
                toolset.get(call.name).validate(call.args)
            except ArgumentsError as exc:
                raise DataError(f"arguments do not fit the schema: {exc}", path=path, line=line) from None
    if not any(m.role == "assistant" for m in messages):
        raise DataError("no assistant turn to learn from", path=path, line=line)
    meta = {"answer": record["answer"]} if "answer" in record else {}
    return Conversation(messages, source=source, meta=meta)


def answers_without_tools(conversation: Conversation) -> bool:
    """Whether the first assistant turn replies in words (a request that needed no tool)."""
    first = next((m for m in conversation.messages if m.role == "assistant"), None)
    return first is not None and not first.tool_calls


def split_holdout(n: int, fraction: float, *, seed: int = 0, minimum: int = 10) -> tuple[list[int], list[int]]:
    """Deterministic train/held-out split of ``n`` conversations (no split below ``minimum``)."""
    indices = list(range(n))
    if fraction <= 0 or n < minimum:
        return indices, []
    random.Random(seed).shuffle(indices)
    k = max(1, round(n * fraction))
    return sorted(indices[k:]), sorted(indices[:k])


def call_demos(conversations: Sequence[Conversation], *, per_tool: int = 4) -> dict[str, list[dict]]:
    """A few (request, arguments) pairs per tool from training data.

    Saved with the checkpoint, they become the demonstrations of argument mode for tools
    that declare no examples of their own: the data shows how its requests map to args.
    """
    demos: dict[str, list[dict]] = {}
    for conversation in conversations:
        request = ""
        for message in conversation.messages:
            if message.role == "user":
                request = message.content
            for call in message.tool_calls[:1]:
                bucket = demos.setdefault(call.name, [])
                demo = {"prompt": request, "args": dict(call.args)}
                if request and len(bucket) < per_tool and demo not in bucket:
                    bucket.append(demo)
    return demos


def with_demos(toolset: Toolset, demos: dict[str, list[dict]]) -> Toolset:
    """The toolset with ``demos`` as examples of the tools that have none."""
    from dataclasses import replace

    from .tool import ToolExample

    specs = tuple(
        replace(spec, examples=tuple(ToolExample(d["prompt"], d["args"]) for d in demos[spec.name]))
        if not spec.examples and demos.get(spec.name) else spec
        for spec in toolset.specs
    )
    return Toolset(specs, toolset.source)


def count_calls(conversations: Sequence[Conversation]) -> int:
    return sum(len(c.tool_names) for c in conversations)
