"""End to end on the embedded default model (SmolLM2-135M-Instruct), offline."""

from __future__ import annotations

import json
import os
import textwrap

import pytest
from typer.testing import CliRunner

from toolken_agent.checkpoint import CONFIG_FILE
from toolken_agent.cli import app

pytestmark = pytest.mark.real_model
runner = CliRunner()


def test_default_model_loads_offline_from_the_converted_cache(smol_lm):
    from toolken_agent.store import EMBEDDED_NAME, cache_dir

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    assert smol_lm.name == EMBEDDED_NAME
    assert smol_lm.vocab_size == 49152 and smol_lm.hidden_size == 576
    converted = list((cache_dir() / "models").glob(f"{EMBEDDED_NAME}-*/model.safetensors"))
    assert converted, "the GGUF conversion should be cached as safetensors"
    assert not any(p.name.startswith(".") for p in (cache_dir() / "models").iterdir())


def test_training_the_math_toolset_beats_its_priors_on_heldout_turns(tmp_path, smol_lm):
    out = tmp_path / "math"
    result = runner.invoke(app, ["train", "--tools", "math", "--out", str(out)])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["heldout"]["accuracy"] > figures["prior_heldout"]["accuracy"]
    assert figures["heldout"]["call_accuracy"] >= 0.4
    config = json.loads((out / CONFIG_FILE).read_text())
    assert config["model_fingerprint"] == smol_lm.fingerprint and len(config["tools"]) == 13


LANGCHAIN_TOOLS = textwrap.dedent('''
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """Get the current weather forecast for a city."""
        return f"Sunny in {city}"

    @tool
    def convert_currency(amount: float, currency: str) -> float:
        """Convert an amount of US dollars into another currency."""
        return amount * 0.9
''')

CITIES = ["Paris", "Tokyo", "Berlin", "Lima", "Cairo", "Oslo", "Rome", "Delhi", "Quito", "Seoul", "Dakar", "Perth"]
WEATHER = ["What's the weather like in {}?", "Will it rain in {} today?", "How hot is it in {} right now?", "Forecast for {} please."]
MONEY = ["Convert {} dollars to euros.", "How many yen is {} USD?", "What is {} US dollars in pounds?", "Change {} dollars into pesos."]
CHAT = ["Tell me a fun fact about owls.", "Write a short poem about spring.", "Who painted the Mona Lisa?", "How do I boil an egg?"]


def openai_line(user, call=None, reply=None):
    messages = [{"role": "user", "content": user}]
    if call:
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": call[0], "arguments": json.dumps(call[1])}}]})
    else:
        messages.append({"role": "assistant", "content": reply})
    return json.dumps({"messages": messages})


def write_langchain_toolset(tmp_path):
    """A @tool file and 36 OpenAI-format conversations for it (24 calls, 12 replies)."""
    tools = tmp_path / "my_tools.py"
    tools.write_text(LANGCHAIN_TOOLS)
    lines = []
    for i, city in enumerate(CITIES):
        lines.append(openai_line(WEATHER[i % 4].format(city), ("get_weather", {"city": city})))
        lines.append(openai_line(MONEY[i % 4].format(10 * i + 5), ("convert_currency", {"amount": 10 * i + 5, "currency": "EUR"})))
        lines.append(openai_line(CHAT[i % 4], reply="Here is what I know about that."))
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(lines) + "\n")
    return tools, data


def test_a_langchain_toolset_with_openai_jsonl_trains_from_the_cli(tmp_path, smol_lm):
    tools, data = write_langchain_toolset(tmp_path)
    result = runner.invoke(app, ["train", "--tools", str(tools), "--data", str(data), "--out", str(tmp_path / "ckpt"), "--epochs", "30"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["heldout"]["accuracy"] >= 0.6


def test_a_trained_langchain_toolset_drives_a_langchain_agent(tmp_path, smol_lm):
    """The user's path end to end: @tool file -> `toolken-agent train` -> ChatToolken in create_agent."""
    import importlib.util

    from langchain.agents import create_agent
    from langchain_core.messages import AIMessage, ToolMessage

    from toolken_agent import ChatToolken

    tools_file, data = write_langchain_toolset(tmp_path)
    ckpt = tmp_path / "ckpt"
    trained = runner.invoke(app, ["train", "--tools", str(tools_file), "--data", str(data), "--out", str(ckpt),
                                  "--epochs", "30", "--holdout", "0"])
    assert trained.exit_code == 0, trained.output

    spec = importlib.util.spec_from_file_location("my_tools_for_agent", tools_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    agent = create_agent(ChatToolken(toolkens=str(ckpt), max_tokens=48), [module.get_weather, module.convert_currency])
    messages = agent.invoke({"messages": [("user", "What's the weather like in Madrid?")]})["messages"]
    calls = [c for m in messages if isinstance(m, AIMessage) for c in m.tool_calls]
    assert calls and calls[0]["name"] == "get_weather" and calls[0]["args"] == {"city": "Madrid"}
    results = [m for m in messages if isinstance(m, ToolMessage)]
    assert results and results[0].content == "Sunny in Madrid"
    # The agent ends on a reply without calls. (Whether SmolLM2 repeats the result in it
    # is not asserted here: after this result it sometimes starts a textual <tool_call>,
    # which the decoder cuts; the math agent test checks answering from a result.)
    assert isinstance(messages[-1], AIMessage) and not messages[-1].tool_calls
