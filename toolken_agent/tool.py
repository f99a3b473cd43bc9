"""Tools: what a toolken stands for.

A tool is anything with a name, a description and an argument schema. Users write
them three ways, and all three become one :class:`ToolSpec`:

* a :class:`Tool` subclass: the docstring is the description, the typed ``run``
  signature is the argument schema, the name is the snake_case class name::

      class StockPrice(Tool):
          '''Look up the latest price of a stock by its ticker symbol.'''

          examples = [ToolExample("What does Apple trade at?", {"ticker": "AAPL"})]

          def run(self, ticker: str) -> float: ...

* a LangChain tool (``@tool`` or a ``BaseTool`` subclass), unchanged;
* a plain function with type hints and a docstring.

The description matters more here than in prompt-based tool calling: it is what the
prior embedding of the tool's toolken is built from (see :mod:`toolken_agent.priors`).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Sequence, get_type_hints

import jsonschema
import pydantic
from typing_extensions import is_typeddict

from .conversation import json_problem
from .errors import ToolsetError

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ArgumentsError(ValueError):
    """Arguments that do not match a tool's schema; the message says which field."""


@dataclass(frozen=True)
class ToolExample:
    """One example use of a tool: a user request and the arguments it calls for."""

    prompt: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolSpec:
    """The one form every tool takes inside toolken-agent.

    ``parameters`` is a JSON schema of ``type: object``; ``func`` is called with the
    validated arguments as keywords (``None`` for a schema-only tool, such as one bound
    for structured output). ``read_only`` is the tool's declared side-effect level:
    ``True`` for a tool that only reads or computes (safe to run while synthesizing
    training data, run without asking), ``False`` for one that acts (sends, writes,
    deletes), ``None`` when undeclared, which is treated as acting.
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    func: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    examples: tuple[ToolExample, ...] = ()
    args_model: type[pydantic.BaseModel] | None = field(default=None, compare=False, repr=False)
    read_only: bool | None = field(default=None, compare=False)
    returns: Any = field(default=None, compare=False, repr=False)  # the declared return type, if any

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ToolsetError(
                f"tool name {self.name!r} must be 1-64 letters, digits, '_' or '-'"
            )
        if not self.description.strip():
            raise ToolsetError(f"tool {self.name!r} has no description (write a docstring)")
        if self.parameters.get("type", "object") != "object":
            raise ToolsetError(f"tool {self.name!r}: argument schema must be a JSON object schema")

    @functools.cached_property
    def fingerprint(self) -> str:
        """A short hash of name, description and schema: what a trained toolken depends on."""
        blob = json.dumps(
            {"name": self.name, "description": self.description, "parameters": self.parameters},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def validate(self, args: Any) -> dict[str, Any]:
        """Check ``args`` against the schema; return keyword arguments for ``func``.

        Arguments are data: they are checked and converted, never evaluated.
        """
        if not isinstance(args, Mapping):
            raise ArgumentsError(f"{self.name}: arguments must be a JSON object, got {type(args).__name__}")
        if self.args_model is not None:
            try:
                model = self.args_model.model_validate(dict(args))
            except pydantic.ValidationError as exc:
                first = exc.errors()[0]
                loc = ".".join(str(p) for p in first["loc"]) or "arguments"
                raise ArgumentsError(f"{self.name}: {loc}: {first['msg']}") from None
            return {name: getattr(model, name) for name in type(model).model_fields}
        try:
            _validator(self).validate(dict(args))
        except jsonschema.ValidationError as exc:
            loc = ".".join(str(p) for p in exc.absolute_path) or "arguments"
            raise ArgumentsError(f"{self.name}: {loc}: {exc.message}") from None
        return dict(args)

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI function-tool dict, the lingua franca of tool-calling APIs."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": dict(self.parameters)},
        }


def parse_arguments(spec: ToolSpec, text: str) -> dict[str, Any]:
    """The JSON object a model wrote as ``spec``'s arguments, checked against its schema.

    The text is parsed as JSON data, never evaluated. Anything that is not a valid
    argument object raises :class:`ArgumentsError`, including what ``json.loads``
    reports outside ``JSONDecodeError`` (an integer too long to convert, nesting too
    deep for the parser), so a caller catching ``ArgumentsError`` sees every failure.
    """
    try:
        args = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ArgumentsError(f"{spec.name}: not valid JSON ({json_problem(exc)})") from None
    spec.validate(args)
    return args


_VALIDATORS: dict[str, Any] = {}


def _validator(spec: ToolSpec) -> Any:
    """One compiled validator per schema: checking the schema itself on every call
    dominated the time to load a large data file."""
    key = spec.fingerprint
    if key not in _VALIDATORS:
        schema = dict(spec.parameters)
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        _VALIDATORS[key] = cls(schema)
    return _VALIDATORS[key]


class Tool:
    """Base class for tools written for toolken-agent.

    Subclasses write a docstring (the description, from which the toolken's prior
    embedding is built) and a typed ``run`` method (its signature is the argument
    schema). ``name`` defaults to the snake_case class name; ``examples`` are optional
    training examples used when no data file is given.
    """

    name: ClassVar[str | None] = None
    examples: ClassVar[Sequence[ToolExample | tuple[str, Mapping[str, Any]]]] = ()
    read_only: ClassVar[bool | None] = None  # True: only reads or computes; False: acts; None: undeclared

    def run(self, **kwargs: Any) -> Any:  # pragma: no cover - always overridden
        raise NotImplementedError

    @classmethod
    def tool_name(cls) -> str:
        return cls.name or snake_case(cls.__name__)

    def spec(self) -> ToolSpec:
        cls = type(self)
        if cls.run is Tool.run:
            raise ToolsetError(f"tool class {cls.__name__} does not define run()")
        description, arg_docs = split_docstring(cls.__doc__ or "")
        model = args_model_from_signature(self.run, f"{cls.__name__}Args", arg_docs)
        return ToolSpec(
            name=cls.tool_name(),
            description=description,
            parameters=json_schema(model),
            func=self.run,
            examples=tuple(_as_example(e) for e in cls.examples),
            args_model=model,
            read_only=cls.read_only,
            returns=return_annotation(self.run),
        )


def snake_case(name: str) -> str:
    """``StockPrice`` -> ``stock_price``, ``HTTPGet`` -> ``http_get``."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return name.lower()


def split_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into the description and per-argument docs.

    transformers' parser (the one its ``get_json_schema`` uses): the description is the
    text before ``Args:`` / ``Returns:`` / ``Raises:``, and ``name: text`` (or
    ``name (type): text``) lines under ``Args:`` become the fields' descriptions.
    Imported here, on first use, so that ``import toolken_agent`` stays light.
    """
    from transformers.utils.chat_template_utils import parse_google_format_docstring

    description, arg_docs, _ = parse_google_format_docstring(inspect.cleandoc(doc))
    return description or "", dict(arg_docs or {})


def args_model_from_signature(
    func: Callable[..., Any], model_name: str, arg_docs: Mapping[str, str] | None = None
) -> type[pydantic.BaseModel]:
    """A pydantic model whose fields are ``func``'s typed parameters; its JSON schema is pydantic's.

    Not transformers' ``get_json_schema``: that one refuses an argument the docstring
    does not describe and gives a schema without a validator, where this gives the
    pydantic model that validates (and converts) the arguments a model writes.
    """
    arg_docs = arg_docs or {}
    try:
        hints = get_type_hints(func, include_extras=True)
    except Exception as exc:  # unresolvable forward references, for example
        raise ToolsetError(f"cannot read the type hints of {func.__qualname__}: {exc}") from None
    fields: dict[str, Any] = {}
    for param in inspect.signature(func).parameters.values():
        if param.name in {"self", "cls"} or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(param.name, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, pydantic.Field(default, description=arg_docs.get(param.name)))
    return pydantic.create_model(model_name, **fields)


def json_schema(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return schema


def schema_node(node: Any, root: Mapping[str, Any]) -> Mapping[str, Any]:
    """``node`` of ``root``'s schema, or the definition its local ``#/$defs/...`` reference names (``{}`` if none)."""
    if not isinstance(node, Mapping):
        return {}
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = (root.get("$defs") or {}).get(ref.removeprefix("#/$defs/"))
        return target if isinstance(target, Mapping) else {}
    return node


def _as_example(example: Any) -> ToolExample:
    if isinstance(example, ToolExample):
        return example
    if isinstance(example, (tuple, list)) and len(example) == 2:
        return ToolExample(str(example[0]), dict(example[1]))
    if isinstance(example, Mapping) and "prompt" in example:
        return ToolExample(str(example["prompt"]), dict(example.get("args", {})))
    raise ToolsetError(f"tool example {example!r} must be ToolExample(prompt, args) or (prompt, args)")


def function_spec(func: Callable[..., Any], name: str | None = None) -> ToolSpec:
    """A plain typed function with a docstring as a tool."""
    description, arg_docs = split_docstring(func.__doc__ or "")
    tool_name = name or func.__name__
    model = args_model_from_signature(func, f"{tool_name}_args", arg_docs)
    examples = tuple(_as_example(e) for e in getattr(func, "examples", ()))
    return ToolSpec(tool_name, description, json_schema(model), func, examples, model,
                    read_only=declared_read_only(getattr(func, "__dict__", {})), returns=return_annotation(func))


def langchain_spec(tool: Any) -> ToolSpec:
    """A LangChain ``BaseTool`` (including ``@tool`` functions) as a tool."""
    from langchain_core.utils.function_calling import convert_to_openai_tool

    function = convert_to_openai_tool(tool)["function"]
    examples = tuple(_as_example(e) for e in (tool.metadata or {}).get("examples", ()))
    # @tool keeps the whole docstring as the description; its Args: section is the
    # schema's business and would only dilute the prior embedding built from the text.
    description = split_docstring(function.get("description") or "")[0] or function.get("description") or ""
    return ToolSpec(
        name=function["name"],
        description=description,
        parameters=function.get("parameters") or {"type": "object", "properties": {}},
        func=lambda **kwargs: tool.invoke(kwargs),
        examples=examples,
        read_only=declared_read_only(tool.metadata or {}),
        returns=return_annotation(getattr(tool, "func", None) or getattr(tool, "coroutine", None)),
    )


def return_annotation(func: Callable[..., Any] | None) -> Any:
    """``func``'s declared return type, or None (not declared, or not resolvable)."""
    if func is None:
        return None
    try:
        return typing.get_type_hints(func).get("return")
    except Exception:  # a forward reference that does not resolve: take it as undeclared
        return None


def declared_read_only(metadata: Mapping[str, Any]) -> bool | None:
    """The side-effect level a tool declares in its metadata, if any.

    ``read_only`` is ours (``@tool`` users set ``my_tool.metadata = {"read_only": True}``,
    a function sets ``func.read_only = True``); ``readOnlyHint`` is the Model Context
    Protocol's tool annotation, which MCP adapters copy into a LangChain tool's metadata.
    """
    for key in ("read_only", "readOnlyHint"):
        value = metadata.get(key)
        if isinstance(value, bool):
            return value
    return None


def schema_spec(obj: Any) -> ToolSpec:
    """A schema-only tool: an OpenAI tool dict, a JSON schema, or a pydantic class."""
    from langchain_core.utils.function_calling import convert_to_openai_tool

    try:
        function = convert_to_openai_tool(obj)["function"]
    except Exception as exc:
        raise ToolsetError(f"cannot use {obj!r} as a tool: {exc}") from None
    model = obj if isinstance(obj, type) and issubclass(obj, pydantic.BaseModel) else None
    return ToolSpec(
        name=function["name"],
        description=function.get("description") or "",
        parameters=function.get("parameters") or {"type": "object", "properties": {}},
        args_model=model,
    )


def to_spec(obj: Any) -> ToolSpec:
    """Turn any supported tool definition into a :class:`ToolSpec`.

    Dispatch is explicit; an unknown kind of object is an error, not a guess.
    """
    if isinstance(obj, ToolSpec):
        return obj
    if isinstance(obj, type) and issubclass(obj, Tool):
        return obj().spec()
    if isinstance(obj, Tool):
        return obj.spec()
    if _is_langchain_tool(obj):
        return langchain_spec(obj)
    if isinstance(obj, Mapping) or _is_model_class(obj) or is_typeddict(obj):
        return schema_spec(obj)
    if inspect.isfunction(obj) or inspect.ismethod(obj):
        return function_spec(obj)
    raise ToolsetError(f"{obj!r} is not a tool (expected a Tool subclass, a LangChain tool, or a function)")


def _is_model_class(obj: Any) -> bool:
    """A pydantic model class, v2 or the v1 compatibility API."""
    if not isinstance(obj, type):
        return False
    if issubclass(obj, pydantic.BaseModel):
        return True
    try:
        from pydantic import v1
    except ImportError:  # pragma: no cover
        return False
    return issubclass(obj, v1.BaseModel)


def _is_langchain_tool(obj: Any) -> bool:
    try:
        from langchain_core.tools import BaseTool
    except ImportError:  # pragma: no cover - langchain-core is a dependency
        return False
    return isinstance(obj, BaseTool)
