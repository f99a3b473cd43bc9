"""The llama.cpp engine (the ``[llamacpp]`` extra) on the embedded default GGUF, against transformers.

Skipped where llama-cpp-python is not installed (the default install, and CI's).
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.real_model

from toolken_agent.conversation import Message  # noqa: E402
from toolken_agent.decoding import CallFinished, DecodeConfig, Decoder  # noqa: E402
from toolken_agent.engine import DecodeContext, LanguageModel  # noqa: E402
from toolken_agent.model import choose_engine, load_model  # noqa: E402


@pytest.fixture(scope="module")
def f16_pair():
    """The default model's F16 GGUF on llama.cpp, and its conversion on transformers in fp32."""
    from toolken_agent.llamacpp import f16_gguf, load_llamacpp
    from toolken_agent.store import embedded_gguf

    gguf = f16_gguf(embedded_gguf())
    return load_llamacpp(str(gguf), threads=1), load_model(str(gguf), dtype="float32", engine="transformers")


@pytest.fixture(scope="module")
def q41():
    from toolken_agent.llamacpp import load_llamacpp

    return load_llamacpp("default", weights="as-is", threads=1)


def _ids(lm: LanguageModel) -> list[int]:
    return lm.tokenizer.apply_chat_template([{"role": "user", "content": "What is 37 times 91?"}],
                                            add_generation_prompt=True, tokenize=True, return_dict=False)


def test_the_default_model_runs_on_llama_cpp_when_it_is_installed(q41, monkeypatch):
    assert isinstance(q41, LanguageModel) and isinstance(q41.new_context(), DecodeContext)
    assert q41.engine == "llama.cpp" and q41.precision.endswith("Q4_1")
    monkeypatch.delenv("TOOLKEN_AGENT_ENGINE", raising=False)
    assert choose_engine("default", None) == "llamacpp"


def test_a_quantized_gguf_decodes_as_its_f16_copy_unless_asked_for_as_is(monkeypatch):
    from toolken_agent.llamacpp import load_llamacpp

    monkeypatch.delenv("TOOLKEN_AGENT_GGUF_WEIGHTS", raising=False)
    chosen = load_model(engine="llamacpp")
    assert chosen.precision == "llama.cpp F16" and chosen.gguf.name == "SmolLM2-135M-Instruct.Q4_1.F16.gguf"
    again = load_llamacpp(str(chosen.gguf), threads=1)  # an F16 file decodes as it is, not copied again
    assert again.gguf == chosen.gguf
    monkeypatch.setenv("TOOLKEN_AGENT_GGUF_WEIGHTS", "as-is")
    assert load_llamacpp("default", threads=1).precision == "llama.cpp Q4_1"


def test_f16_hidden_states_and_logits_match_transformers_fp32_on_the_same_weights(f16_pair):
    llama, hf = f16_pair
    ids = _ids(hf)
    ctx = llama.new_context()
    hidden = ctx.feed(ids)
    expected = hf.final_hidden(torch.tensor([ids]))[0, -1]
    assert torch.nn.functional.cosine_similarity(hidden, expected, dim=0) > 0.9999
    assert int(ctx.logits().argmax()) == int(hf.vocab_logits(expected).argmax())
    batched = llama.final_hidden(torch.tensor([ids]))[0]  # (T, d)
    full = hf.final_hidden(torch.tensor([ids]))[0]
    assert torch.nn.functional.cosine_similarity(batched, full, dim=1).min() > 0.999


def test_greedy_tokens_on_f16_equal_transformers_fp32(f16_pair):
    llama, hf = f16_pair
    ids = _ids(hf)
    ours, theirs = llama.new_context(), hf.new_context()
    ours.feed(ids), theirs.feed(ids)
    a, b = [], []
    for _ in range(16):
        a.append(int(ours.logits().argmax()))
        b.append(int(theirs.logits().argmax()))
        ours.feed([a[-1]]), theirs.feed([b[-1]])
    assert a == b


def test_keeping_a_prefix_reuses_the_cache_and_equals_a_fresh_context(q41):
    ids = _ids(q41)
    reused = q41.new_context()
    reused.feed(ids + [100, 200, 300])
    reused.keep(len(ids))
    hidden = reused.feed([400, 500])
    fresh = q41.new_context().feed(ids + [400, 500])
    assert torch.nn.functional.cosine_similarity(hidden, fresh, dim=0) > 0.999


def test_more_contexts_than_kv_sequences_each_give_what_a_fresh_context_gives(q41):
    from toolken_agent.llamacpp import SEQUENCES

    ids = _ids(q41)
    contexts = [q41.new_context() for _ in range(SEQUENCES + 3)]
    for i, ctx in enumerate(contexts):  # the last ones take the first ones' sequences
        ctx.feed(ids + [100 + i])
    first = contexts[0]
    first.keep(len(ids) - 2)  # on a context whose cache was lent away
    hidden = first.feed([400, 500])
    fresh = q41.new_context()
    expected = fresh.feed(ids[:-2] + [400, 500])
    assert torch.nn.functional.cosine_similarity(hidden, expected, dim=0) > 0.999
    assert int(first.logits().argmax()) == int(fresh.logits().argmax())
    for ctx in contexts:
        ctx.close()


def test_the_same_weights_have_the_same_fingerprint_on_both_engines(q41, smol_lm):
    assert q41.fingerprint == smol_lm.fingerprint and q41.vocab_size == smol_lm.vocab_size


def test_toolkens_trained_on_transformers_call_the_right_tool_decoded_on_llama_cpp(q41, math_toolkens_dir):
    from toolken_agent.toolkens import Toolkens
    from toolken_agent.toolset import load_toolset

    toolkens = Toolkens.load(math_toolkens_dir, load_toolset("math"), lm=q41)
    events = list(Decoder(toolkens).stream([Message("user", "What is 37 times 91?")], DecodeConfig(max_new_tokens=24)))
    calls = [e.call for e in events if isinstance(e, CallFinished)]
    assert calls and calls[0].name == "multiply"


def test_the_f16_copy_is_made_once_verified_at_every_use_and_made_again_when_damaged(tmp_path, monkeypatch, capsys):
    from toolken_agent.llamacpp import f16_gguf
    from toolken_agent.store import embedded_gguf

    source = embedded_gguf()
    monkeypatch.setenv("TOOLKEN_AGENT_CACHE", str(tmp_path))
    copy = f16_gguf(source)
    assert copy.is_file() and copy.name == "SmolLM2-135M-Instruct.Q4_1.F16.gguf"
    made = copy.stat().st_mtime_ns
    assert f16_gguf(source) == copy and copy.stat().st_mtime_ns == made  # verified, not made again
    with open(copy, "r+b") as f:  # damage one byte past the header
        f.seek(4096)
        byte = f.read(1)
        f.seek(4096)
        f.write(bytes([byte[0] ^ 0xFF]))
    capsys.readouterr()
    assert f16_gguf(source) == copy
    assert "does not match the hashes recorded" in capsys.readouterr().err
    assert [p.name for p in copy.parent.parent.iterdir()] == [copy.parent.name]  # no temporary left beside it
