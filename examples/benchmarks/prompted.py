"""The baseline users have today: prompted function calling, with and without demonstrations.

The tools' JSON schemas go into the prompt and the model writes the call as text, the way
LangChain chat models over local models do it: through the tokenizer's chat template when
it knows tools (Qwen2.5's does), else a system prompt in the same Hermes style (Qwen's
own wording), asking for ``<tool_call>{"name": ..., "arguments": ...}</tool_call>``. The
``icl`` variant adds demonstrations from the training data as earlier turns.

The tool list is the same for every test question, so its tokens are run once and their
KV cache reused (cropped back after each question); that is the best case for this
baseline, as a server with prefix caching would run it. Generation is greedy and stops
as soon as the call's name is written, at the end of the turn, or as soon as the reply
cannot be a call.

Scored like the toolken methods at a conversation's first call: ``select`` (the first
call names the gold tool). Arguments are not generated (the toolken methods' arguments
are measured end to end, :func:`examples.benchmarks.suite.end_to_end`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from toolken_agent.conversation import Conversation
from toolken_agent.model import FrozenLM
from toolken_agent.tool import ToolSpec

SYSTEM = (
    "You are a helpful assistant.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within <tool_call></tool_call> "
    'XML tags:\n<tool_call>\n{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)
_CALL = re.compile(r'\{\s*"name"\s*:\s*"([^"]+)"')
_NAME_DONE = re.compile(r'\{\s*"name"\s*:\s*"[^"]+"\s*[,}]')
_CALL_START = ("<tool_call>", "{")


@dataclass
class PromptedResult:
    examples: int = 0
    select: float = 0.0
    calls_written: float = 0.0  # replies that are a call at all
    prompt_tokens: int = 0  # the tool list's tokens (per request without prefix caching)
    seconds_per_example: float = 0.0
    skipped: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def tool_dict(spec: ToolSpec) -> dict:
    return {"type": "function", "function": {"name": spec.name, "description": spec.description, "parameters": spec.parameters}}


def first_call(conversation: Conversation) -> tuple[list[dict], Any]:
    """(messages before the first call, as chat-template dicts; the gold call)."""
    msgs: list[dict] = []
    for m in conversation.messages:
        if m.tool_calls:
            return msgs, m.tool_calls[0]
        msgs.append({"role": m.role, "content": m.content})
    raise ValueError(f"{conversation.source}: no tool call")


def demo_turns(demos: Sequence[Conversation]) -> list[dict]:
    turns: list[dict] = []
    for c in demos:
        prompt, call = first_call(c)
        call_text = json.dumps({"name": call.name, "arguments": dict(call.args)}, ensure_ascii=False)
        turns += prompt[-1:] + [{"role": "assistant", "content": f"<tool_call>\n{call_text}\n</tool_call>"}]
    return turns


def render(lm: FrozenLM, specs: Sequence[ToolSpec], messages: list[dict]) -> str:
    tools = [tool_dict(s) for s in specs]
    tok = lm.tokenizer
    try:
        text = tok.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
        if specs and specs[0].name in text:
            return text
    except Exception:  # noqa: BLE001, S110 - templates without tool support raise many kinds; fall back below
        pass
    system = SYSTEM.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))
    return tok.apply_chat_template([{"role": "system", "content": system}, *messages], add_generation_prompt=True, tokenize=False)


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _could_be_call(text: str) -> bool:
    s = text.lstrip()
    return any(s.startswith(p) or p.startswith(s) for p in _CALL_START)


@torch.inference_mode()
def generate_calls(lm: FrozenLM, prompts: Sequence[list[int]], *, max_new_tokens: int = 48) -> list[str]:
    """Greedy replies to ``prompts`` sharing one prefix, with its KV cache reused."""
    prefix = min(_lcp(prompts[0], p) for p in prompts) if len(prompts) > 1 else len(prompts[0]) - 1
    prefix = min(prefix, min(len(p) for p in prompts) - 1)
    device = lm.device
    _, out = lm.hidden_states(torch.tensor([prompts[0][:prefix]], device=device), use_cache=True)
    cache = out.cache if "cache" in out else out.past_key_values
    eos = {lm.tokenizer.eos_token_id, lm.tokenizer.convert_tokens_to_ids("<|im_end|>")}
    replies = []
    for ids in prompts:
        extra = cache.get_seq_length() - prefix
        if extra:
            cache.crop(-extra)
        step = torch.tensor([ids[prefix:]], device=device)
        generated: list[int] = []
        text = ""
        for _ in range(max_new_tokens):
            hidden, out = lm.hidden_states(step, cache=cache, use_cache=True)
            cache = out.cache if "cache" in out else out.past_key_values
            token = int(lm.step_logits(hidden[0, -1]).argmax())
            if token in eos:
                break
            generated.append(token)
            text = lm.tokenizer.decode(generated)
            if _NAME_DONE.search(text) or not _could_be_call(text) and not _CALL.search(text):
                break  # the tool is chosen (all that is scored), or the reply is not a call
            step = torch.tensor([[token]], device=device)
        replies.append(text)
    return replies


def parse_call(text: str) -> tuple[str | None, dict | None]:
    match = _CALL.search(text)
    if not match:
        return None, None
    body = text[match.start():].split("</tool_call>")[0].strip()
    try:
        data = json.loads(body)
        args = data.get("arguments") if isinstance(data, dict) else None
        return match.group(1), args if isinstance(args, dict) else None
    except json.JSONDecodeError:
        return match.group(1), None


def evaluate_prompted(lm: FrozenLM, specs: Sequence[ToolSpec], tests: Sequence[Conversation],
                      demos: Sequence[Conversation] = ()) -> PromptedResult:
    """Prompted function calling at each test conversation's first call."""
    demo = demo_turns(demos)
    items = [first_call(c) for c in tests]
    prompts = [lm.tokenizer(render(lm, specs, demo + msgs), add_special_tokens=False)["input_ids"] for msgs, _ in items]
    result = PromptedResult(examples=len(items))
    result.prompt_tokens = _lcp(prompts[0], prompts[1]) if len(prompts) > 1 else len(prompts[0])
    limit = getattr(lm.model.config, "max_position_embeddings", None)
    if limit and max(len(p) for p in prompts) + 64 > limit:
        result.skipped = f"prompt of {max(len(p) for p in prompts)} tokens exceeds the model's {limit}-token context"
        return result
    start = time.perf_counter()
    replies = generate_calls(lm, prompts)
    result.seconds_per_example = (time.perf_counter() - start) / len(items)
    right = sum(parse_call(reply)[0] == gold.name for (_, gold), reply in zip(items, replies))
    result.select = right / len(items)
    result.calls_written = sum(parse_call(reply)[0] is not None for reply in replies) / len(items)
    return result
