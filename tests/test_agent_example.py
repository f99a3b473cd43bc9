"""The LangChain v1 agent example runs end to end, offline, on the default model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, ToolMessage

pytestmark = pytest.mark.real_model
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "langchain_agent.py"


def load_example():
    spec = importlib.util.spec_from_file_location("langchain_agent_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_agent_calls_multiply_with_the_right_numbers_and_answers_from_the_result(math_toolkens_dir):
    agent = load_example().build_agent(toolkens=str(math_toolkens_dir))
    result = agent.invoke({"messages": [("user", "What is 37 times 91?")]})
    messages = result["messages"]
    calls = [c for m in messages if isinstance(m, AIMessage) for c in m.tool_calls]
    assert calls and calls[0]["name"] == "multiply"
    assert sorted(calls[0]["args"]["numbers"]) == [37, 91]
    results = [m for m in messages if isinstance(m, ToolMessage)]
    assert results and results[0].content == "3367"
    final = messages[-1]
    assert isinstance(final, AIMessage) and not final.tool_calls
    assert "3367" in final.content.replace(",", "")
