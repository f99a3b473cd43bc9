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

No tool schema is written into the prompt. Each bound tool is a toolken: the trained row
from ``toolkens`` when the checkpoint has that tool, else a zero-shot row from the
tool's prior embedding, calibrated so that it stays quiet on requests that need no tool.
Arguments are written by the model under the tool's JSON schema, so they always parse.

The constructor is cheap: the model loads on first use, once per process for all
instances with the same ``model`` and ``dtype``.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any, Callable, Iterator, Literal, Sequence

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
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
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from pydantic import Field

from ..checkpoint import check_model, load_checkpoint
from ..conversation import Message, ToolCall, content_text
from ..decoding import ArgumentsChunk, CallFinished, CallRefused, CallStarted, Decoder, DecodeConfig, Finished, TextChunk
from ..executor import DEFAULT_TIMEOUT, run_tool
from ..model import FrozenLM, load_model
from ..tool import ToolSpec, to_spec
from ..toolkens import Toolkens
from ..toolset import Toolset


class _Runtime:
    """What instances with the same model and checkpoint share: the LM, the trained rows, the grammar."""

    def __init__(self, model: str | None, dtype: str, toolkens: str | None):
        from ..arguments import ArgumentGrammar

        self.lm: FrozenLM = load_model(model, dtype=dtype)
        self.where = toolkens or ""
        self.trained = load_checkpoint(toolkens) if toolkens is not None else None
        if self.trained is not None:
            check_model(self.trained[1], self.lm.fingerprint, self.lm.hidden_size, where=self.where)
        self.grammar = ArgumentGrammar(self.lm.tokenizer, self.lm.vocab_size)

    def toolkens(self, specs: Sequence[ToolSpec]) -> Toolkens:
        """A head over ``specs``: trained rows where the checkpoint has them, else zero-shot (:meth:`Toolkens.bind`)."""
        return Toolkens.bind(self.lm, Toolset(tuple(specs), "bound tools"), self.trained, where=self.where)


_RUNTIMES: dict[tuple, _Runtime] = {}
_RUNTIMES_LOCK = threading.Lock()


def _runtime(model: str | None, dtype: str, toolkens: str | None) -> _Runtime:
    key = (model, dtype, toolkens)
    with _RUNTIMES_LOCK:
        if key not in _RUNTIMES:
            _RUNTIMES[key] = _Runtime(model, dtype, toolkens)
        return _RUNTIMES[key]


class ChatToolken(BaseChatModel):
    """A frozen local LM that calls tools through toolkens (see the module docstring)."""

    model: str | None = None
    """Model spec: HF id, local directory, ``.gguf`` file; ``None`` is the embedded default."""
    toolkens: str | None = None
    """Checkpoint directory from ``toolken-agent train`` (optional)."""
    temperature: float = 0.0
    top_p: float = 1.0
    """Nucleus sampling (with ``temperature`` > 0): sample from the smallest set of tokens holding this much probability."""
    max_tokens: int | None = 256
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
    tool_timeout: float = 30.0
    dtype: str = "auto"
    seed: int | None = None
    max_retries: int = 0
    timeout: float | None = None

    model_config = {"populate_by_name": True}

    @property
    def _llm_type(self) -> str:
        return "toolken"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        """Every setting that changes the output: LangChain's cache keys on these."""
        return {"model": self.model or "default", "toolkens": self.toolkens, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "top_p": self.top_p, "stop": self.stop, "tool_bias": self.tool_bias, "seed": self.seed,
                "dtype": self.dtype, "max_calls": self.max_calls, "max_hops": self.max_hops,
                "call_threshold": self.call_threshold}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any):
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "toolken"
        params["ls_model_name"] = kwargs.get("model") or self._model_name()  # as response_metadata names it
        return params

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

    # -- generation ----------------------------------------------------------------------
    def _decode(self, messages: list[BaseMessage], stop: list[str] | None, **kwargs: Any) -> Iterator[Any]:
        runtime = _runtime(kwargs.get("model") or self.model, self.dtype, self.toolkens)
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
            tool_bias=self.tool_bias,
            tool_timeout=self.tool_timeout,
            seed=self.seed,
        )
        decoder = Decoder(toolkens, runtime.grammar)
        yield from decoder.stream(to_messages(messages), config, run_tools=False)

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        for event in self._decode(messages, stop, **kwargs):
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
                                           response_metadata={"model_name": self._model_name(),
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

    def _model_name(self) -> str:
        return self.model or "SmolLM2-135M-Instruct"


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
