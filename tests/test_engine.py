"""The engine seam: what every engine gives the code above it, pinned on the transformers engine."""

from __future__ import annotations

import sys
import types

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


@pytest.fixture()
def llama_cpp_installed(monkeypatch):
    """``import llama_cpp`` succeeds (a stand-in module): what auto sees where the extra is installed."""
    monkeypatch.delenv("TOOLKEN_AGENT_ENGINE", raising=False)
    monkeypatch.setitem(sys.modules, "llama_cpp", types.ModuleType("llama_cpp"))


@pytest.fixture()
def llama_cpp_missing(monkeypatch):
    """``import llama_cpp`` raises ImportError: the default install, and CI's."""
    monkeypatch.delenv("TOOLKEN_AGENT_ENGINE", raising=False)
    monkeypatch.setitem(sys.modules, "llama_cpp", None)


def test_a_gguf_decodes_on_llama_cpp_by_default_when_it_imports(llama_cpp_installed):
    for spec in ("default", "smollm2", "SmolLM2-135M-Instruct", "/models/x.gguf"):
        assert choose_engine(spec, None) == "llamacpp"
        assert choose_engine(spec, "auto") == "llamacpp"


def test_a_gguf_falls_back_to_transformers_silently_when_llama_cpp_does_not_import(llama_cpp_missing):
    assert choose_engine("default", None) == "transformers"
    assert choose_engine("/models/x.gguf", "auto") == "transformers"
    with pytest.raises(ModelError, match=r"needs llama-cpp-python: pip install 'toolken-agent\[llamacpp\]'"):
        choose_engine("default", "llamacpp")


def test_a_llama_cpp_whose_library_fails_to_load_counts_as_absent(monkeypatch):
    class BrokenBuild:
        """llama-cpp-python installed, its shared library failing to load as it raises then."""

        def find_spec(self, name, path=None, target=None):
            if name == "llama_cpp":
                raise RuntimeError("Failed to load shared library 'libllama.so'")
            return None

    monkeypatch.delenv("TOOLKEN_AGENT_ENGINE", raising=False)
    monkeypatch.delitem(sys.modules, "llama_cpp", raising=False)
    monkeypatch.setattr(sys, "meta_path", [BrokenBuild(), *sys.meta_path])
    assert choose_engine("default", None) == "transformers"


def test_forcing_an_engine_by_argument_or_environment_wins_over_auto(llama_cpp_installed, monkeypatch):
    assert choose_engine("default", "transformers") == "transformers"
    monkeypatch.setenv("TOOLKEN_AGENT_ENGINE", "transformers")
    assert choose_engine("default", None) == "transformers"
    assert choose_engine("default", "llamacpp") == "llamacpp"  # the argument over the environment


def test_models_that_are_not_gguf_run_on_transformers_and_llama_cpp_refuses_them(tiny_model_dir, llama_cpp_installed,
                                                                                 monkeypatch):
    assert choose_engine(str(tiny_model_dir), None) == "transformers"
    assert choose_engine("HuggingFaceTB/SmolLM2-135M-Instruct", "auto") == "transformers"
    with pytest.raises(ModelError, match="runs GGUF files"):
        choose_engine(str(tiny_model_dir), "llamacpp")
    monkeypatch.setenv("TOOLKEN_AGENT_ENGINE", "vllm")
    with pytest.raises(ModelError, match="unknown engine 'vllm'"):
        choose_engine(str(tiny_model_dir), None)


def test_load_model_sends_a_gguf_to_llama_cpp_when_it_imports_else_to_transformers(
        tiny_model_dir, llama_cpp_installed, monkeypatch, capsys, tmp_path):
    import toolken_agent.llamacpp as llamacpp
    import toolken_agent.store as store

    gguf = str(tmp_path / "tiny-auto.gguf")
    (tmp_path / "tiny-auto.gguf").write_bytes(b"GGUF")
    monkeypatch.setattr(store, "converted_gguf", lambda path, name, **kw: tiny_model_dir)  # its conversion: the tiny model
    monkeypatch.setattr(llamacpp, "load_llamacpp", lambda spec, **kw: ("llama.cpp", spec))
    assert load_model(gguf, dtype="float32") == ("llama.cpp", gguf)
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    lm = load_model(gguf, dtype="float32")
    assert lm.engine == "transformers" and lm.name == "tiny-auto"
    assert capsys.readouterr().err == ""  # the fallback says nothing


def test_chat_takes_engine_and_refuses_llama_cpp_for_a_model_that_is_not_gguf(tiny_model_dir):
    from typer.testing import CliRunner

    from toolken_agent.cli import app

    result = CliRunner().invoke(app, ["chat", "--tools", "math", "--model", str(tiny_model_dir), "--engine", "llamacpp"],
                                input="hi\n")
    assert result.exit_code != 0
    assert "the llama.cpp engine runs GGUF files" in result.output and "Traceback" not in result.output


def test_a_device_that_does_not_exist_is_a_model_error(tiny_model_dir):
    with pytest.raises(ModelError, match="cannot put the model on device 'nonsense'"):
        load_model(str(tiny_model_dir), dtype="float32", device="nonsense")


class _OnLlamaCpp:
    """The tiny model dressed as a GGUF decoding on llama.cpp, whose frozen pass must not run."""

    engine = "llama.cpp"

    def __init__(self, lm, spec: str):
        self._lm, self.spec = lm, spec

    def __getattr__(self, name):
        return getattr(self._lm, name)

    def final_hidden(self, *args, **kwargs):
        raise AssertionError("training ran its frozen pass on the llama.cpp engine")


def test_fitting_with_a_llama_cpp_model_caches_on_transformers_and_decodes_on_llama_cpp(tiny_model_dir, small_toolset):
    from toolken_agent.augment import example_conversations
    from toolken_agent.toolkens import Toolkens
    from toolken_agent.training import TrainConfig

    on_llama = _OnLlamaCpp(load_model(str(tiny_model_dir), dtype="float32"), str(tiny_model_dir))
    toolkens, report = Toolkens.fit(on_llama, small_toolset, example_conversations(small_toolset), lambdas=None,
                                    config=TrainConfig(epochs=1))
    assert report.tokens > 0 and toolkens.lm is on_llama
