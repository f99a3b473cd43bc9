"""``ChatToolken``: a LangChain chat model whose tool choice comes from toolken logits.

Setup:
    .. code-block:: bash

        pip install torch==2.13.0 toolken-agent
        toolken-agent train --tools mytools.py --out toolkens-mine   # optional

Instantiate:
    .. code-block:: python

        from toolken_agent import ChatToolken

        llm = ChatToolken()                                  # embedded SmolLM2-135M-Instruct
        llm = ChatToolken(toolkens="toolkens-mine", temperature=0.0, max_tokens=256)

Invoke:
    .. code-block:: python

        llm.invoke("Write a haiku about the sea.")

Tool calling:
    .. code-block:: python

        from langchain_core.tools import tool

        @tool
        def get_weather(city: str) -> str:
            '''Get the current weather for a city.'''
            return "sunny"

        llm.bind_tools([get_weather]).invoke("What's the weather in Paris?").tool_calls
        # [{'name': 'get_weather', 'args': {'city': 'Paris'}, 'id': 'call_...', 'type': 'tool_call'}]

Structured output:
    .. code-block:: python

        from pydantic import BaseModel

        class Person(BaseModel):
            name: str
            age: int

        llm.with_structured_output(Person, method="json_schema").invoke("Ann is 31.")
        # Person(name='Ann', age=31)

    ``json_schema``: the reply text itself is held to the schema while it is decoded (no
    tool, no toolken); ``json_mode``: the reply is JSON, held to the schema when one is
    given (the parser would refuse anything else) and any JSON object when it is ``None``
    (as with ``bind(response_format={"type": "json_object"})``); ``function_calling``
    (the default): the schema is bound as a tool and its call is forced.

No tool schema is written into the prompt. Each bound tool is a toolken: the trained row
from ``toolkens`` when the checkpoint has that tool, else a zero-shot row from the
tool's prior embedding, calibrated so that it stays quiet on requests that need no tool.
Arguments are written by the model under the tool's JSON schema, so they always parse.

The constructor is cheap: the model loads on first use, once per process for all
instances with the same ``model`` and ``dtype``. A setting it does not know (a typo such
as ``temprature``) is an error, not silently dropped.
"""

from __future__ import annotations

import difflib
import json
import threading
import time
from dataclasses import replace
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.model_profile import ModelProfile
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import ConfigDict, Field, field_validator, model_validator

from ..checkpoint import check_model, load_checkpoint
from ..conversation import Message, ToolCall, content_text
from ..decoding import ArgumentsChunk, CallFinished, CallRefused, CallStarted, Decoder, DecodeConfig, Finished, TextChunk
from ..errors import ToolkenError
from ..executor import DEFAULT_TIMEOUT, run_tool
from ..model import DEFAULT_MODEL, EMBEDDED_NAME, FrozenLM, load_model
from ..store import EMBEDDED_ALIASES
from ..tool import ToolSpec, to_spec
from ..toolkens import Toolkens
from ..toolset import Toolset


class _Runtime:
    """What instances with the same model and checkpoint share: the LM, the trained rows, the grammar."""

    def __init__(self, model: str | None, dtype: str, toolkens: str | None, engine: str | None = None):
        from ..arguments import ArgumentGrammar
        from ..base_model import recorded_model
        from ..hub import resolve_checkpoint

        self.where = toolkens or ""
        self.trained = load_checkpoint(resolve_checkpoint(toolkens)) if toolkens is not None else None  # a dir or a Hub repo id
        if model is None and self.trained is not None:  # the model the checkpoint was trained on, as `chat` loads it
            config = self.trained[1]
            model = recorded_model(config.base_model, config.model, where=self.where)
        self.lm: FrozenLM = load_model(model, dtype=dtype, engine=engine)
        if self.trained is not None:
            check_model(self.trained[1], self.lm.fingerprint, self.lm.hidden_size, where=self.where)
        self.grammar = ArgumentGrammar(self.lm.tokenizer, self.lm.vocab_size)

    def toolkens(self, specs: Sequence[ToolSpec]) -> Toolkens:
        """A head over ``specs``: trained rows where the checkpoint has them, else zero-shot (:meth:`Toolkens.bind`)."""
        return Toolkens.bind(self.lm, Toolset(tuple(specs), "bound tools"), self.trained, where=self.where)


_RUNTIMES: dict[tuple, _Runtime] = {}
_RUNTIMES_LOCK = threading.Lock()


def _runtime(model: str | None, dtype: str, toolkens: str | None, engine: str | None = None) -> _Runtime:
    key = (model, dtype, toolkens, engine)
    with _RUNTIMES_LOCK:
        if key not in _RUNTIMES:
            _RUNTIMES[key] = _Runtime(model, dtype, toolkens, engine)
        return _RUNTIMES[key]


def _loaded_lm(model: str | None, dtype: str, toolkens: str | None, engine: str | None) -> FrozenLM | None:
    """The LM an instance with these settings already loaded, else ``None`` (nothing is loaded).

    The checkpoint and engine count: without ``model``, a checkpoint loads the model it records.
    """
    with _RUNTIMES_LOCK:
        runtime = _RUNTIMES.get((model, dtype, toolkens, engine))
        return runtime.lm if runtime is not None else None


def model_name(spec: str | None) -> str:
    """The name the loader gives the model ``spec`` names (``FrozenLM.name``), known without loading it.

    ``ls_model_name`` is needed before the model loads; the response names the loaded
    model, and the two must agree (the embedded default is ``SmolLM2-135M-Instruct``,
    never ``default``).
    """
    if spec is None or spec in EMBEDDED_ALIASES:
        return EMBEDDED_NAME
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        return path.stem
    return path.name if path.is_dir() else spec.rsplit("/", 1)[-1]


_TRAINED_MODEL_NAMES: dict[str, str] = {}


def trained_model_name(toolkens: str) -> str | None:
    """The model name a checkpoint records (what loads when ``model=`` is not given), read from its config alone.

    From a directory or the local Hub cache only: a constructor that asks for a name
    must not download (the checkpoint is fetched when the model first runs). Names found
    are kept; a miss is asked again, since a later download can fill the cache.
    """
    from ..checkpoint import CONFIG_FILE, parse_config
    from ..hub import resolve_checkpoint

    if toolkens not in _TRAINED_MODEL_NAMES:
        try:
            path = Path(resolve_checkpoint(toolkens, local_files_only=True))
            name = parse_config(json.loads((path / CONFIG_FILE).read_text(encoding="utf-8")), where=path).model_name
        except (OSError, ValueError, ToolkenError):  # unreadable here: loading will say why
            return None
        if not name:
            return None
        _TRAINED_MODEL_NAMES[toolkens] = name
    return _TRAINED_MODEL_NAMES[toolkens]


def model_profile(name: str, lm: FrozenLM | None) -> ModelProfile:
    """What LangChain may ask of the model (``BaseChatModel.profile``); the context length once it has loaded."""
    profile = ModelProfile(
        name=name, open_weights=True, text_inputs=True, text_outputs=True, image_inputs=False, audio_inputs=False,
        video_inputs=False, pdf_inputs=False, image_outputs=False, audio_outputs=False, video_outputs=False,
        reasoning_output=False, tool_calling=True, tool_choice=True, tool_call_streaming=True,
        structured_output=True, temperature=True,
    )
    if lm is not None and lm.context_length:
        profile["max_input_tokens"] = lm.context_length
    return profile


# Settings some chat models take that mean nothing for a model running in this process.
_REMOTE_ONLY = ("api_key", "base_url")
# What may reach a call besides the constructor's settings: LangChain's own binding
# keys and the per-call overrides ``_start`` reads.
_CALL_KWARGS = frozenset({"tools", "tool_choice", "parallel_tool_calls", "response_format", "stream",
                          "model", "temperature", "top_p", "max_tokens", "seed"})
# ``json_mode``: any JSON object. additionalProperties is explicit because an object
# schema without it is closed by the grammar (arguments.py), which would allow only ``{}``.
JSON_OBJECT = {"type": "object", "additionalProperties": True}


class ChatToolken(BaseChatModel):
    """A frozen local LM that calls tools through toolkens (see the module docstring)."""

    model: str | None = None
    """Model spec: HF id, local directory, ``.gguf`` file; ``None`` is the embedded default."""
    toolkens: str | None = None
    """Checkpoint directory from ``toolken-agent train`` (optional)."""
    temperature: float = Field(default=0.0, ge=0)
    """0 is greedy."""
    top_p: float = Field(default=1.0, gt=0, le=1)
    """Nucleus sampling (with ``temperature`` > 0): sample from the smallest set of tokens holding this much probability."""
    max_tokens: int | None = Field(default=256, ge=1)
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    tool_bias: float = 0.0
    """Added to every toolken logit: higher fires tools more readily."""
    max_calls: int = 1
    """Calls in one reply (AIMessage); binding with ``parallel_tool_calls=True`` allows up to 4."""
    max_hops: int = 4
    """Calls for one user request across the agent loop; past it the model answers in words."""
    call_threshold: float | None = None
    """Probability a call needs from the checkpoint's whether-to-call gate (lower calls more
    readily); ``None``: the threshold chosen at training for its false-positive target."""
    calibrated_choices: bool | None = None
    """An enum argument's value chosen by what the request adds to its score over a request
    asking for nothing: ``None`` for tools without examples of their own (zero-shot) and,
    for every tool, a field left once the values the request names are taken; ``True``
    for every tool, ``False`` for none (the model writes the value token by token)."""
    tool_timeout: float = DEFAULT_TIMEOUT
    """Seconds a tool may run in ``as_langchain_tool``'s executor; ChatToolken itself runs no tool."""
    dtype: str = "auto"
    engine: str | None = None
    """What decodes: ``"llamacpp"`` (a GGUF), ``"transformers"``, or ``"auto"``; ``None`` reads
    ``$TOOLKEN_AGENT_ENGINE``, else ``auto``: llama.cpp for a GGUF (the default model too) when
    the ``[llamacpp]`` extra is installed, else transformers."""
    seed: int | None = None
    timeout: float | None = Field(default=None, gt=0)
    """Wall-clock seconds for one reply, counted from the call (loading the model on first use
    included). When it runs out the reply ends with the text written so far and
    ``finish_reason`` ``"timeout"``; a call whose arguments were still being written is dropped."""
    max_retries: int | None = 0
    """Must be 0 (or ``None``): the model runs in this process, so there is no request to
    retry, and a local run that failed fails the same way again. (The one network step,
    fetching the default model on first use, is retried by pip.)"""
    streaming: bool = False
    """LangChain's switch: ``True`` makes ``invoke`` go through ``stream``. Tokens reach
    callbacks either way."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_settings(cls, values: Any) -> Any:
        """A setting that is not a field is an error (``extra="forbid"``), said in one line with the likely one meant."""
        if not isinstance(values, dict):
            return values
        known = {name for name, f in cls.model_fields.items()} | {f.alias for f in cls.model_fields.values() if f.alias}
        for key in values:
            if key in known or key == "callback_manager":  # callback_manager: LangChain's deprecated spelling, mapped by the base
                continue
            if key in _REMOTE_ONLY:
                raise ToolkenError(f"ChatToolken runs the model in this process: it takes no {key}")
            close = difflib.get_close_matches(key, sorted(known), n=1)
            raise ToolkenError(f"ChatToolken has no setting {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return values

    @field_validator("max_retries")
    @classmethod
    def _no_retries(cls, value: int | None) -> int:
        if value not in (0, None):
            raise ToolkenError(f"max_retries={value}: ChatToolken runs the model in this process, so there is no "
                               "request to retry; leave it out (or 0)")
        return 0

    @property
    def _llm_type(self) -> str:
        return "toolken"

    def _model_name(self, model: str | None) -> str:
        """The loaded model's name, known before it loads: ``model``'s, or the checkpoint's when ``model`` is not given."""
        if model is None and self.toolkens is not None:
            return trained_model_name(self.toolkens) or model_name(None)
        return model_name(model)

    @property
    def _identifying_params(self) -> dict[str, Any]:
        """Every setting that changes the output: LangChain's cache keys on these.

        ``stop`` is keyed as ``stop_sequences``: LangChain writes the call's own ``stop``
        (``None`` when not given) over a ``stop`` key. Left out, because they do not change
        a reply: ``tool_timeout`` (no tool runs here), ``max_retries``, ``streaming``.
        """
        return {"model": self.model or DEFAULT_MODEL, "toolkens": self.toolkens, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "top_p": self.top_p, "stop_sequences": self.stop, "tool_bias": self.tool_bias,
                "seed": self.seed, "dtype": self.dtype, "engine": self.engine, "max_calls": self.max_calls, "max_hops": self.max_hops,
                "call_threshold": self.call_threshold, "calibrated_choices": self.calibrated_choices,
                "timeout": self.timeout}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any):
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "toolken"
        params["ls_model_name"] = self._model_name(kwargs.get("model") or self.model)  # as response_metadata names it
        return params

    def _resolve_model_profile(self) -> ModelProfile:
        """The profile LangChain reads (``llm.profile``); ``max_input_tokens`` once the model has loaded.

        The constructor loads nothing, so the context length is there at construction only
        if another instance loaded the model already; otherwise the first call adds it.
        """
        return model_profile(self._model_name(self.model), _loaded_lm(self.model, self.dtype, self.toolkens, self.engine))

    # -- tools ---------------------------------------------------------------------------
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable | Any],
        *,
        tool_choice: dict | str | Literal["auto", "any", "required", "none"] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; each becomes a toolken (trained or zero-shot). No prompt is added."""
        specs = [to_spec(t) for t in tools]
        return super().bind(tools=[bound_tool(s) for s in specs], tool_choice=_tool_choice(tool_choice, specs), **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        include_raw: bool = False,
        method: Literal["function_calling", "json_schema", "json_mode"] = "function_calling",
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """The model's reply parsed into ``schema`` (a pydantic class gives instances, anything else dicts).

        ``method``:

        * ``"function_calling"`` (default): ``schema`` is bound as a tool and its call is
          forced; the arguments are written in argument mode, with demonstrations.
        * ``"json_schema"``: the reply text itself is decoded under ``schema`` (no tool, no
          toolken), so it always parses and validates, and ``finish_reason`` is ``"stop"``
          unless ``max_tokens`` or ``timeout`` cut it short.
        * ``"json_mode"``: the reply is JSON. Given a ``schema``, it is held to it as with
          ``json_schema`` (the parser refuses any other object, so a looser grammar could
          only produce parse errors); with ``schema=None`` (or
          ``bind(response_format={"type": "json_object"})``) it is any JSON object, and the
          prompt must say which keys.

        ``strict`` is accepted for compatibility: the grammar always holds the JSON to the schema.
        """
        if kwargs:
            raise ValueError(f"Received unsupported arguments {kwargs}")
        if method == "function_calling":
            if schema is None:
                raise ValueError("function_calling needs a schema")
            return super().with_structured_output(schema, include_raw=include_raw)
        if method == "json_schema":
            if schema is None:
                raise ValueError("json_schema needs a schema")
            response_format = json_schema_format(schema)
        elif method == "json_mode":  # held to the schema when there is one: the parser would refuse anything else
            response_format = json_schema_format(schema) if schema is not None else {"type": "json_object"}
        else:
            raise ValueError(f"unknown structured output method {method!r}: use function_calling, json_schema or json_mode")
        traced = {"ls_structured_output_format": {"kwargs": {"method": method, "strict": strict}, "schema": schema}} if schema else {}
        llm = self.bind(response_format=response_format, **traced)
        parser = (PydanticOutputParser(pydantic_object=schema) if isinstance(schema, type) and is_basemodel_subclass(schema)
                  else JsonOutputParser())
        if not include_raw:
            return llm | parser
        parsed = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        failed = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parsed.with_fallbacks([failed], exception_key="parsing_error")

    # -- generation ----------------------------------------------------------------------
    def _start(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: Mapping[str, Any]) -> tuple[FrozenLM, Iterator[Any]]:
        """The loaded LM and the decoder's events for one reply."""
        started = time.monotonic()  # the reply's time budget counts from the call
        unknown = set(kwargs) - _CALL_KWARGS
        if unknown:
            raise ToolkenError(f"ChatToolken got call settings it does not know: {', '.join(sorted(unknown))}")
        runtime = _runtime(kwargs.get("model") or self.model, self.dtype, self.toolkens, self.engine)
        self._complete_profile(runtime.lm, kwargs.get("model"))
        specs = [spec_of_bound(t) for t in kwargs.get("tools") or []]
        toolkens = runtime.toolkens(specs)
        config = DecodeConfig(
            max_new_tokens=kwargs.get("max_tokens") or self.max_tokens or 256,
            temperature=kwargs.get("temperature", self.temperature),
            top_p=kwargs.get("top_p", self.top_p),
            stop=tuple(stop or self.stop or ()),
            tool_choice=kwargs.get("tool_choice") or "auto",
            max_calls=self.max_hops,
            calls_per_turn=max(self.max_calls, 4) if kwargs.get("parallel_tool_calls") else self.max_calls,
            call_threshold=self.call_threshold,
            calibrated_choices=self.calibrated_choices,
            tool_bias=self.tool_bias,
            tool_timeout=self.tool_timeout,
            seed=kwargs.get("seed", self.seed),
            deadline=started + self.timeout if self.timeout is not None else None,
            reply_schema=reply_schema(kwargs.get("response_format")),
        )
        decoder = Decoder(toolkens, runtime.grammar)
        return runtime.lm, decoder.stream(to_messages(messages), config, run_tools=False)

    def _complete_profile(self, lm: FrozenLM, override: str | None) -> None:
        """Add the context length to the profile this instance resolved, once its model has loaded."""
        if override is None and self.profile is not None and self.profile == model_profile(self._model_name(self.model), None):
            self.profile = model_profile(self._model_name(self.model), lm)

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        lm, events = self._start(messages, stop, kwargs)
        for event in events:
            if isinstance(event, TextChunk):
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=event.text))
                if run_manager:
                    run_manager.on_llm_new_token(event.text, chunk=chunk)
                yield chunk
            elif isinstance(event, (CallStarted, ArgumentsChunk, CallFinished, CallRefused)):
                piece = call_chunk(event)
                if piece is not None:  # the arguments, streamed as the model writes them
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[piece]))
                    if run_manager:
                        run_manager.on_llm_new_token("", chunk=chunk)
                    yield chunk
            elif isinstance(event, Finished):
                usage = UsageMetadata(input_tokens=event.prompt_tokens, output_tokens=event.completion_tokens,
                                      total_tokens=event.prompt_tokens + event.completion_tokens)
                yield ChatGenerationChunk(
                    message=AIMessageChunk(content="", usage_metadata=usage, chunk_position="last",
                                           response_metadata={"model_name": lm.name,
                                                              "finish_reason": event.reason,
                                                              "model_provider": "toolken"}),
                    generation_info={"finish_reason": event.reason},
                )

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        final: AIMessageChunk | None = None
        for chunk in self._stream(messages, stop, run_manager, **kwargs):
            final = chunk.message if final is None else final + chunk.message
        assert final is not None  # the decoder always ends with Finished
        message = AIMessage(
            content=final.content,
            tool_calls=final.tool_calls,
            invalid_tool_calls=final.invalid_tool_calls,
            usage_metadata=final.usage_metadata,
            response_metadata=final.response_metadata,
            id=final.id,
        )
        return ChatResult(generations=[ChatGeneration(message=message,
                                                      generation_info={"finish_reason": final.response_metadata.get("finish_reason")})])


def json_schema_format(schema: dict[str, Any] | type) -> dict[str, Any]:
    """``schema`` as OpenAI's ``response_format`` for a JSON-schema reply (what ``create_agent``'s ProviderStrategy binds too)."""
    json_schema = convert_to_json_schema(schema)
    return {"type": "json_schema", "json_schema": {"name": json_schema.get("title", "response"), "schema": json_schema}}


def reply_schema(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema a ``response_format`` (OpenAI's shapes) holds the reply to; ``None`` for free text."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return dict(JSON_OBJECT)
    if kind == "json_schema" and isinstance(response_format.get("json_schema"), dict) \
            and isinstance(response_format["json_schema"].get("schema"), dict):
        return dict(response_format["json_schema"]["schema"])
    raise ToolkenError("response_format must be {'type': 'text' | 'json_object'} or "
                       "{'type': 'json_schema', 'json_schema': {'name': ..., 'schema': {...}}}")


READ_ONLY_KEY = "x-read-only"  # in a bound tool's function dict: its declared side-effect level


def bound_tool(spec: ToolSpec) -> dict[str, Any]:
    """``spec`` as the OpenAI dict LangChain binds, with its declared side-effect level kept.

    Bound tools reach ``_generate`` as dicts; without the flag a read-only tool would
    be taken for an acting one there (its arguments then traced to the request alone).
    """
    tool = spec.to_openai()
    if spec.read_only is not None:
        tool["function"][READ_ONLY_KEY] = spec.read_only
    return tool


def spec_of_bound(tool: Any) -> ToolSpec:
    """The spec of a tool as bound by :func:`bound_tool` (or any other tool definition)."""
    spec = to_spec(tool)
    flag = tool.get("function", {}).get(READ_ONLY_KEY) if isinstance(tool, dict) else None
    return replace(spec, read_only=flag) if isinstance(flag, bool) else spec


def call_chunk(event: CallStarted | ArgumentsChunk | CallFinished | CallRefused) -> dict[str, Any] | None:
    """The ``tool_call_chunk`` a call's event adds to the reply, if any.

    The name and id come first (:class:`CallStarted`), then the argument text as it is
    written; LangChain joins the chunks of one ``index``, so their sum is the call. A
    call that ends unusable (arguments incomplete or invalid, or refused by
    :mod:`toolken_agent.provenance`) was streamed already, so its last chunk makes the
    joined text something LangChain's partial-JSON repair cannot turn into an object
    (:func:`unparsable_ending`), and LangChain files the call under
    ``invalid_tool_calls``, the written text readable at the start of its ``args``.
    """
    if isinstance(event, CallStarted):
        return {"name": event.name, "args": "", "id": event.id, "index": event.index, "type": "tool_call_chunk"}
    if isinstance(event, ArgumentsChunk):
        return {"name": None, "args": event.text, "id": None, "index": event.index, "type": "tool_call_chunk"}
    if isinstance(event, CallFinished) and event.error is None:
        return None
    ending = unparsable_ending(event.raw_arguments)
    return {"name": None, "args": ending, "id": None, "index": event.index, "type": "tool_call_chunk"}


def unparsable_ending(text: str) -> str:
    """What to append to ``text``, a prefix of JSON, so that no repair makes it an object.

    ``langchain_core``'s ``parse_partial_json`` closes an open string and open brackets
    (``{"a":99`` becomes ``{"a": 99}``, a valid call) but gives up at a closing bracket
    that matches nothing. So: finish a pending escape, close an open string, then a
    bracket of the wrong kind.
    """
    in_string = escaped = False
    open_brackets: list[str] = []
    for ch in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            open_brackets.append(ch)
        elif ch in "}]" and open_brackets:
            open_brackets.pop()
    ending = ("\\" if escaped else "") + ('"' if in_string else "")
    return ending + ("}" if open_brackets and open_brackets[-1] == "[" else "]")


def _tool_choice(choice: Any, specs: Sequence[ToolSpec]) -> str:
    """Normalize LangChain's many spellings of tool_choice to auto/none/required/<name>."""
    if choice in (None, "auto", False):
        return "auto" if choice is not False else "none"
    if choice is True:
        return "required"
    if isinstance(choice, dict):
        name = choice.get("function", {}).get("name") or choice.get("name")
        if not name:
            raise ValueError(f"unsupported tool_choice {choice!r}")
        choice = name
    if choice in ("any", "required"):
        return "required"
    if choice == "none":
        return "none"
    if choice not in [s.name for s in specs]:
        raise ValueError(f"tool_choice {choice!r} is not one of the bound tools")
    return choice


def to_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    """LangChain messages as toolken-agent messages; unknown kinds are an error."""
    out = []
    for m in messages:
        if isinstance(m, SystemMessage):
            out.append(Message("system", _text(m)))
        elif isinstance(m, HumanMessage):
            out.append(Message("user", _text(m)))
        elif isinstance(m, AIMessage):
            calls = tuple(ToolCall(c["name"], dict(c.get("args") or {}), c.get("id")) for c in m.tool_calls)
            out.append(Message("assistant", _text(m), tool_calls=calls))
        elif isinstance(m, ToolMessage):
            text = _text(m)
            if getattr(m, "status", "success") == "error" and not text.lower().startswith("error"):
                text = f"Error: {text}"
            out.append(Message("tool", text, tool_call_id=m.tool_call_id, name=m.name))
        elif isinstance(m, ChatMessage):
            role = {"human": "user", "ai": "assistant"}.get(m.role, m.role)
            if role not in ("system", "user", "assistant", "tool"):
                raise ValueError(f"unsupported chat message role {m.role!r}")
            out.append(Message(role, _text(m)))
        else:
            raise ValueError(f"unsupported message type {type(m).__name__}")
    return out


def _text(message: BaseMessage) -> str:
    """Text of a message; Anthropic-style call blocks are dropped (they repeat ``tool_calls``)."""
    content = message.content
    if isinstance(content, list):
        content = [b for b in content if not (isinstance(b, dict) and b.get("type") in ("tool_use", "tool_call"))]
    return content_text(content)



def as_langchain_tool(tool: Any, *, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
    """Any tool definition (a ``Tool`` subclass, a function, a spec) as a LangChain tool.

    Lets the built-in toolsets and ``Tool`` classes run inside LangChain agents::

        from toolken_agent.tools.math import TOOLS
        agent = create_agent(ChatToolken(toolkens="toolkens-math"), [as_langchain_tool(t) for t in TOOLS])

    The tool runs through :func:`~toolken_agent.executor.run_tool`, as in toolken-agent's
    own loop: its result is the text the model reads, and a tool that raises, runs past
    ``timeout`` seconds or returns something that is not text or JSON data gives a
    ``ToolMessage`` with ``status="error"`` instead of an exception that ends the agent's
    run. A LangChain tool (``BaseTool``) is returned unchanged, with its own error handling.
    """
    from langchain_core.tools import BaseTool, StructuredTool, ToolException

    if isinstance(tool, BaseTool):
        return tool
    spec = to_spec(tool)
    if spec.func is None:
        raise ValueError(f"tool {spec.name!r} has no implementation to run")

    def run(**kwargs: Any) -> str:
        outcome = run_tool(spec, kwargs, timeout=timeout)
        if outcome.is_error:
            raise ToolException(outcome.content)
        return outcome.content

    metadata = {"read_only": spec.read_only} if spec.read_only is not None else None
    return StructuredTool.from_function(func=run, name=spec.name, description=spec.description,
                                        args_schema=spec.args_model or dict(spec.parameters), handle_tool_error=True,
                                        metadata=metadata)
