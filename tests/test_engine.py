"""The engine seam: what every engine gives the code above it, pinned on the transformers engine."""

from __future__ import annotations

import pytest
import torch

from toolken_agent.engine import DecodeContext, LanguageModel
from toolken_agent.errors import ModelError
from toolken_agent.model import choose_engine, load_model

IDS = [5, 17, 42, 8, 99, 3, 250, 61]


def test_the_transformers_model_and_its_context_are_what_the_seam_asks_for(tiny_lm):
    assert isinstance(tiny_lm, LanguageModel)
    assert isinstance(tiny_lm.new_context(), DecodeContext)
    assert tiny_lm.engine == "transformers" and tiny_lm.precision == "float32"


def test_a_context_step_gives_the_batched_pass_hidden_state_and_logits(tiny_lm):
    ctx = tiny_lm.new_context()
    hidden = ctx.feed(IDS[:5])
    hidden = ctx.feed(IDS[5:])
    full = tiny_lm.final_hidden(torch.tensor([IDS]))[0, -1]  # (d,)
    torch.testing.assert_close(hidden, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ctx.logits(), tiny_lm.vocab_logits(full), atol=1e-5, rtol=1e-5)


def test_keeping_a_prefix_then_feeding_equals_a_fresh_context(tiny_lm):
    reused = tiny_lm.new_context()
    reused.feed(IDS)
    reused.keep(4)
    hidden = reused.feed([7, 7, 9])
    fresh = tiny_lm.new_context().feed(IDS[:4] + [7, 7, 9])
    torch.testing.assert_close(hidden, fresh, atol=1e-5, rtol=1e-5)
    reused.keep(0)
    torch.testing.assert_close(reused.feed([7, 9]), tiny_lm.new_context().feed([7, 9]), atol=1e-5, rtol=1e-5)


def test_end_tokens_come_from_the_tokenizer_and_generation_config(tiny_lm):
    assert tiny_lm.tokenizer.eos_token_id in tiny_lm.eos_token_ids


def test_the_default_engine_is_transformers_and_a_gguf_engine_refuses_other_models(tiny_model_dir, monkeypatch):
    monkeypatch.delenv("TOOLKEN_AGENT_ENGINE", raising=False)
    assert choose_engine(str(tiny_model_dir), None) == "transformers"
    assert choose_engine(str(tiny_model_dir), "auto") == "transformers"
    with pytest.raises(ModelError, match="runs GGUF files"):
        choose_engine(str(tiny_model_dir), "llamacpp")
    monkeypatch.setenv("TOOLKEN_AGENT_ENGINE", "vllm")
    with pytest.raises(ModelError, match="unknown engine 'vllm'"):
        choose_engine(str(tiny_model_dir), None)


def test_a_device_that_does_not_exist_is_a_model_error(tiny_model_dir):
    with pytest.raises(ModelError, match="cannot put the model on device 'nonsense'"):
        load_model(str(tiny_model_dir), dtype="float32", device="nonsense")
