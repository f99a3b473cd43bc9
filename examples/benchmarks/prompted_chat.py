"""Prompted function calling as a LangChain chat model: the anchor a user would pick instead.

The tools' JSON schemas go into the prompt through the tokenizer's own chat template
(``apply_chat_template(..., tools=...)``; Qwen2.5's knows tools and the ``tool`` role),
the model writes ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` as text, and
the calls are parsed from it, as ``ChatOllama`` or ``ChatHuggingFace`` do over a local
model. Greedy, no grammar: what the model writes is what the agent gets. For the
agent-loop benchmark only (:mod:`examples.benchmarks.agent_loop`).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, Sequence

import torch
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict

from toolken_agent.model import FrozenLM

_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.S)
# Small models also write the call as a fenced JSON block; a user's parser would take it.
_FENCED = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.S)
_BARE = re.compile(r"^\s*(\{.*\})\s*$", re.S)  # the whole reply one JSON object


def to_dicts(messages: Sequence[BaseMessage]) -> list[dict]:
    """LangChain messages as chat-template dicts (OpenAI shape)."""
    out: list[dict] = []
    for m in messages:
        if isinstance(m, SystemMessage):
            out.append({"role": "system", "content": m.text})
        elif isinstance(m, HumanMessage):
            out.append({"role": "user", "content": m.text})
        elif isinstance(m, AIMessage):
            calls = [{"type": "function", "function": {"name": c["name"], "arguments": c["args"]}} for c in m.tool_calls]
            out.append({"role": "assistant", "content": m.text, **({"tool_calls": calls} if calls else {})})
        elif isinstance(m, ToolMessage):
            out.append({"role": "tool", "content": m.text, "name": m.name or ""})
        else:
            raise ValueError(f"unsupported message type {type(m).__name__}")
    return out


def parse_calls(text: str) -> tuple[str, list[dict]]:
    """The text outside ``<tool_call>`` blocks (else fenced JSON, else a reply that is one JSON
    object), and the calls that parse as JSON with a name."""
    calls = []
    pattern = _CALL if _CALL.search(text) else _FENCED if _FENCED.search(text) else _BARE
    for block in pattern.findall(text):
        try:
            data = json.loads(block)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            args = data.get("arguments") if isinstance(data.get("arguments"), dict) else {}
            calls.append({"name": data["name"], "args": args, "id": f"call_{uuid.uuid4().hex[:12]}", "type": "tool_call"})
    return (pattern.sub("", text).strip() if calls else text.strip()), calls


class PromptedChat(BaseChatModel):
    """A frozen local LM doing prompted function calling through its chat template."""

    lm: Any
    max_tokens: int = 96
    model_config = ConfigDict(arbitrary_types_allowed=True)

    @property
    def _llm_type(self) -> str:
        return "prompted-local"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any):
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    @torch.inference_mode()
    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        lm: FrozenLM = self.lm
        tools = kwargs.get("tools") or None
        ids = lm.tokenizer.apply_chat_template(to_dicts(messages), tools=tools, add_generation_prompt=True,
                                               tokenize=True, return_dict=False)
        ids = torch.tensor([list(ids["input_ids"] if isinstance(ids, dict) else ids)])
        with lm.lock:
            out = lm.model.generate(ids, max_new_tokens=self.max_tokens, do_sample=False,
                                    pad_token_id=lm.tokenizer.eos_token_id)
        text = lm.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        content, calls = parse_calls(text)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=content, tool_calls=calls))])
