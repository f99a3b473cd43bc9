"""ChatToolken's LangChain surface: settings that work or are refused, the cache key, names,
the profile, and the structured-output methods (on the tiny model)."""

from __future__ import annotations

import json
import re
from typing import Literal

import pytest
from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, ValidationError
from typing_extensions import TypedDict

from toolken_agent import ChatToolken, ToolkenError
from toolken_agent.integrations.langchain import model_name


class Verdict(BaseModel):
    """A verdict on the request."""

    ok: bool
    color: Literal["red", "blue"]


class VerdictDict(TypedDict):
    """A verdict on the request."""

    ok: bool
    color: Literal["red", "blue"]


@pytest.fixture()
def tiny_chat(tiny_model_dir):
    def make(**settings) -> ChatToolken:
        return ChatToolken(model=str(tiny_model_dir), dtype="float32", **{"max_tokens": 64, **settings})
    return make


# -- settings ------------------------------------------------------------------------------
def test_a_misspelt_setting_is_an_error_that_names_the_setting_meant():
    with pytest.raises(ToolkenError, match=r"no setting 'temprature' \(did you mean 'temperature'\?\)"):
        ChatToolken(temprature=0.9)
    with pytest.raises(ToolkenError, match="no setting 'colour'"):
        ChatToolken(colour="red")


def test_settings_for_a_remote_service_are_refused_because_the_model_runs_here():
    with pytest.raises(ToolkenError, match="no api_key"):
        ChatToolken(api_key="sk-test")
    with pytest.raises(ToolkenError, match="max_retries=2.*no request to retry"):
        ChatToolken(max_retries=2)
    assert ChatToolken(max_retries=0).max_retries == ChatToolken(max_retries=None).max_retries == 0


@pytest.mark.parametrize("settings", [{"top_p": 0.0}, {"top_p": 1.5}, {"temperature": -1.0}, {"timeout": 0.0},
                                      {"max_tokens": 0}])
def test_settings_out_of_range_are_refused(settings):
    with pytest.raises(ValidationError):
        ChatToolken(**settings)


def test_a_misspelt_call_setting_is_an_error_before_any_model_loads():
    with pytest.raises(ToolkenError, match="temprature"):
        ChatToolken(model="/nonexistent/model").invoke("hi", temprature=0.9)


def test_langchains_own_settings_are_still_accepted():
    llm = ChatToolken(stop_sequences=["\n"], streaming=True, timeout=60, tags=["x"], disable_streaming="tool_calling")
    assert llm.stop == ["\n"] and llm.streaming and llm.timeout == 60


# -- the cache key -------------------------------------------------------------------------
# A changed value for every ChatToolken setting that changes a reply.
CHANGES = {"model": "other", "toolkens": "ckpt", "temperature": 0.7, "top_p": 0.5, "max_tokens": 7, "stop": ["x"],
           "tool_bias": 5.0, "max_calls": 2, "max_hops": 1, "call_threshold": 0.3, "calibrated_choices": False,
           "dtype": "float32", "seed": 1, "timeout": 9.0, "engine": "transformers"}
NO_EFFECT_ON_REPLIES = {"tool_timeout", "max_retries", "streaming"}  # see ChatToolken._identifying_params


def test_every_setting_of_chat_toolken_is_in_the_cache_key_or_declared_without_effect():
    own = set(ChatToolken.model_fields) - set(BaseChatModel.model_fields)
    assert own == set(CHANGES) | NO_EFFECT_ON_REPLIES
    assert set(CHANGES) - {"stop"} | {"stop_sequences"} <= set(ChatToolken()._identifying_params)


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_two_instances_configured_differently_have_different_cache_keys(name):
    assert ChatToolken(**{name: CHANGES[name]})._get_llm_string() != ChatToolken()._get_llm_string()


def test_a_cached_reply_is_not_served_to_an_instance_with_another_tool_bias(tiny_chat):
    from langchain_core.caches import InMemoryCache

    cache = InMemoryCache()
    tiny_chat(cache=cache, max_tokens=3).invoke("hi")
    tiny_chat(cache=cache, max_tokens=3, tool_bias=5.0).invoke("hi")
    assert len(cache._cache) == 2


# -- names and profile ---------------------------------------------------------------------
def test_the_traced_model_name_is_the_name_the_response_gives(tiny_chat, tiny_model_dir):
    llm = tiny_chat(max_tokens=2)
    reply = llm.invoke("hi")
    assert llm._get_ls_params()["ls_model_name"] == reply.response_metadata["model_name"] == tiny_model_dir.name


def test_the_default_model_is_named_for_what_it_is_not_default():
    assert model_name(None) == model_name("default") == "SmolLM2-135M-Instruct"
    assert ChatToolken(model="default")._get_ls_params()["ls_model_name"] == "SmolLM2-135M-Instruct"
    assert ChatToolken()._get_ls_params(model="org/Other-1B")["ls_model_name"] == "Other-1B"


def test_the_profile_says_tools_and_structured_output_and_gives_the_context_length_once_loaded(tiny_chat, tiny_lm):
    before = ChatToolken(model="/never/loaded").profile
    assert before["tool_calling"] and before["tool_choice"] and before["structured_output"]
    assert "max_input_tokens" not in before  # the constructor loads nothing
    llm = tiny_chat(max_tokens=1)
    llm.invoke("hi")
    context = tiny_lm.model.config.max_position_embeddings
    assert llm.profile["max_input_tokens"] == context
    assert tiny_chat().profile["max_input_tokens"] == context  # known at construction once loaded


def test_a_profile_the_user_gives_is_kept(tiny_chat):
    llm = tiny_chat(max_tokens=1, profile={"max_input_tokens": 100})
    llm.invoke("hi")
    assert llm.profile == {"max_input_tokens": 100}


# -- timeout and top_p ---------------------------------------------------------------------
def test_a_reply_past_its_timeout_ends_at_once_and_says_so(tiny_chat):
    reply = tiny_chat(max_tokens=200, timeout=1e-9).invoke("hi")
    assert reply.response_metadata["finish_reason"] == "timeout"
    assert reply.usage_metadata["output_tokens"] == 0 and reply.content == ""
    assert tiny_chat(max_tokens=3).invoke("hi").response_metadata["finish_reason"] in ("length", "stop")


def test_top_p_reaches_the_sampler(tiny_chat):
    greedy = tiny_chat(max_tokens=8).invoke("What is 12 times 7?").content
    hot = lambda top_p, seed: tiny_chat(max_tokens=8, temperature=50.0, top_p=top_p, seed=seed).invoke("What is 12 times 7?").content
    assert all(hot(1e-6, seed) == greedy for seed in range(3))  # a nucleus of one token is greedy at any temperature
    assert any(hot(1.0, seed) != greedy for seed in range(3))


# -- structured output ---------------------------------------------------------------------
def test_json_schema_output_is_the_reply_text_itself_held_to_the_schema(tiny_chat):
    out = tiny_chat().with_structured_output(Verdict, method="json_schema", include_raw=True).invoke("hi")
    raw, parsed = out["raw"], out["parsed"]
    assert isinstance(parsed, Verdict) and out["parsing_error"] is None
    assert raw.tool_calls == [] and json.loads(raw.content) == parsed.model_dump()
    assert raw.response_metadata["finish_reason"] == "stop"


@pytest.mark.parametrize("schema", [VerdictDict, Verdict.model_json_schema()])
def test_json_schema_output_for_a_typed_dict_or_a_json_schema_is_a_dict(tiny_chat, schema):
    parsed = tiny_chat().with_structured_output(schema, method="json_schema").invoke("hi")
    assert set(parsed) == {"ok", "color"} and parsed["color"] in ("red", "blue")


def test_json_mode_output_is_a_json_object(tiny_chat):
    out = tiny_chat().with_structured_output(None, method="json_mode", include_raw=True).invoke("hi")
    assert isinstance(json.loads(out["raw"].content), dict) and out["parsed"] == json.loads(out["raw"].content)


@pytest.mark.parametrize("schema", [Verdict, Verdict.model_json_schema()])
def test_json_mode_given_a_schema_holds_the_reply_to_that_schema(tiny_chat, schema):
    """Sampled hot, the tiny model still writes exactly the schema's keys and values: the parser would refuse anything else."""
    for seed in range(4):
        out = tiny_chat(temperature=1.0, seed=seed).with_structured_output(schema, method="json_mode", include_raw=True).invoke("hi")
        assert out["parsing_error"] is None and out["raw"].tool_calls == []
        written = json.loads(out["raw"].content)
        assert Verdict.model_validate(written) and set(written) == {"ok", "color"}
        assert (out["parsed"].model_dump() if isinstance(out["parsed"], Verdict) else out["parsed"]) == written


@pytest.mark.parametrize("how", ["structured_output", "response_format"])
def test_json_mode_without_a_schema_holds_the_reply_to_any_json_object_not_to_given_keys(tiny_chat, how):
    """The same hot samples as above, with no schema, open an object whose keys are the model's own."""
    replies = []
    for seed in range(4):
        llm = tiny_chat(temperature=1.0, seed=seed)
        if how == "structured_output":
            replies.append(llm.with_structured_output(None, method="json_mode", include_raw=True).invoke("hi")["raw"])
        else:
            replies.append(llm.bind(response_format={"type": "json_object"}).invoke("hi"))
    assert all(r.content.startswith("{") and r.tool_calls == [] for r in replies)
    finished = [r.content for r in replies if r.response_metadata["finish_reason"] == "stop"]
    assert finished and all(isinstance(json.loads(text), dict) for text in finished)
    assert any(not re.match(r'\{"(ok|color)":', r.content) for r in replies)  # not the keys a schema would force


def test_function_calling_output_still_comes_from_a_forced_call(tiny_chat):
    out = tiny_chat().with_structured_output(Verdict, include_raw=True).invoke("hi")
    assert [c["name"] for c in out["raw"].tool_calls] == ["Verdict"] and isinstance(out["parsed"], Verdict)


def test_an_unknown_structured_output_method_is_an_error():
    with pytest.raises(ValueError, match="unknown structured output method 'xml'"):
        ChatToolken().with_structured_output(Verdict, method="xml")


def test_an_agent_with_a_response_format_gets_it_natively_without_a_tool_call(tiny_chat):
    from langchain.agents import create_agent

    result = create_agent(tiny_chat(), tools=[], response_format=Verdict).invoke({"messages": [("user", "hi")]})
    assert isinstance(result["structured_response"], Verdict)
    assert not any(getattr(m, "tool_calls", None) for m in result["messages"])


@pytest.mark.parametrize("setting, asked", [(None, 1), (False, 0)])
def test_calibrated_choices_reaches_the_decoder(tiny_chat, monkeypatch, setting, asked):
    from langchain_core.tools import tool

    from toolken_agent.decoding import Decoder

    @tool
    def paint(color: Literal["red", "blue"]) -> str:
        """Paint the fence."""
        return color

    chosen = []
    monkeypatch.setattr(Decoder, "_choose_value", lambda self, *a, **k: chosen.append(a) or [])
    llm = tiny_chat(max_tokens=2, calibrated_choices=setting).bind_tools([paint], tool_choice="paint")
    reply = llm.invoke("Paint it like the sea")  # names no value: the choice is scored
    assert reply.tool_calls and reply.tool_calls[0]["name"] == "paint" and len(chosen) == asked
