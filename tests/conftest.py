"""Shared fixtures: a tiny random model for fast unit tests, the real default for the rest.

The tiny model is a 2-layer Llama built from a config with a byte-level BPE tokenizer
trained in the test session on a few sentences, with a ChatML chat template like
SmolLM2's. It needs no files and no network, and exercises the same code paths.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

# Everything runs offline: the default model comes from a PyPI wheel, never the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest
import torch

from toolken_agent.model import FrozenLM, freeze
from toolken_agent.tool import Tool, ToolExample
from toolken_agent.toolset import make_toolset

CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "What is 12 times 7? The answer is 84.",
    "Add 3 and 4 to get 7. Subtract 2 from 10. Divide 9 by 3.",
    '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>',
    "Hello! How can I help you today? The weather in Paris is sunny.",
    "system user assistant tool You are a helpful assistant.",
    "0123456789 {}[]\":,.-_ abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ",
]


def make_tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 5, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|im_end|>", bos_token="<|im_start|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    fast.chat_template = CHATML
    return fast


def make_tiny_lm(seed: int = 0, dtype: torch.dtype = torch.float32) -> FrozenLM:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = make_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(dtype)
    return FrozenLM(model=freeze(model), tokenizer=tokenizer, spec="tiny", name="tiny")


@pytest.fixture(scope="session")
def tiny_lm() -> FrozenLM:
    return make_tiny_lm()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_lm) -> Path:
    """The tiny model saved as a local model directory, for loading by path."""
    path = tmp_path_factory.mktemp("tiny-model")
    tiny_lm.model.save_pretrained(path)
    tiny_lm.tokenizer.save_pretrained(path)
    return path


class Add(Tool):
    """Add two numbers and return their sum."""

    read_only = True
    examples = [ToolExample("What is 3 plus 4?", {"a": 3, "b": 4}), ("Add 10 and 5.", {"a": 10, "b": 5})]

    def run(self, a: float, b: float) -> float:
        return a + b


class WeatherNow(Tool):
    """Get the current weather for a city."""

    examples = [ToolExample("How is the weather in Paris?", {"city": "Paris"})]

    def run(self, city: str) -> str:
        return f"sunny in {city}"


@pytest.fixture()
def small_toolset():
    return make_toolset([Add, WeatherNow], "test")


@pytest.fixture(scope="session")
def smol_lm() -> FrozenLM:
    """The embedded default model (fetched and converted on first use, then cached)."""
    from toolken_agent.model import load_model

    return load_model(engine="transformers")  # real-model tests read transformers internals; test_llamacpp covers llama.cpp


@pytest.fixture(scope="session")
def smol_tokenizer(smol_lm):
    return smol_lm.tokenizer


def pytest_collection_modifyitems(config, items):
    if os.environ.get("TOOLKEN_SKIP_REAL_MODEL"):
        skip = pytest.mark.skip(reason="TOOLKEN_SKIP_REAL_MODEL is set")
        for item in items:
            if "real_model" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def math_toolkens_dir(tmp_path_factory, smol_lm) -> Path:
    """Toolkens for the built-in math toolset, trained once on the default model."""
    from toolken_agent.augment import example_conversations
    from toolken_agent.toolkens import Toolkens
    from toolken_agent.toolset import load_toolset

    toolset = load_toolset("math")
    toolkens, _ = Toolkens.fit(smol_lm, toolset, example_conversations(toolset), holdout=0.0)
    return toolkens.save(tmp_path_factory.mktemp("toolkens") / "math")


# A toolset file and JSONL lines in the shapes users write, for the CLI tests.
CLI_TOOLS = textwrap.dedent('''
    from langchain_core.tools import tool

    @tool
    def add(a: float, b: float) -> float:
        """Add two numbers and return their sum."""
        return a + b

    @tool
    def weather_now(city: str) -> str:
        """Get the current weather for a city."""
        return "sunny"
''')


def cli_conversation(i: int) -> dict:
    if i % 3 == 0:
        return {"messages": [{"role": "user", "content": f"Hello number {i}"}, {"role": "assistant", "content": "Hello! How can I help?"}]}
    name, args = ("add", {"a": i, "b": 2}) if i % 3 == 1 else ("weather_now", {"city": "Paris"})
    return {"messages": [{"role": "user", "content": f"question {i}"},
                         {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                                               "function": {"name": name, "arguments": json.dumps(args)}}]}]}
