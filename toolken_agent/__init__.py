"""toolken-agent: tool calling for frozen language models through learned toolkens.

The LM stays frozen; each tool gets one output-embedding row (a *toolken*) initialized
from a prior embedding of its name and description, and trained on cached features.
"""

from .errors import CheckpointError, DataError, ModelError, ToolkenError, ToolsetError

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "DataError", "FrozenLM", "ModelError", "Tool", "ToolExample", "ToolSpec",
    "ToolkenError", "Toolkens", "Toolset", "ToolsetError", "load_model", "load_toolset",
    "make_toolset", "to_spec", "ChatToolken", "load_jsonl", "example_conversations",
]

# Names whose modules import torch (or LangChain's model stack, or pydantic and
# jsonschema for tools) load on first use, so that `import toolken_agent` and the CLI's
# --help stay light.
_LAZY = {
    "Tool": ".tool", "ToolExample": ".tool", "ToolSpec": ".tool", "to_spec": ".tool",
    "Toolset": ".toolset", "load_toolset": ".toolset", "make_toolset": ".toolset",
    "FrozenLM": ".model", "load_model": ".model", "Toolkens": ".toolkens",
    "ChatToolken": ".integrations.langchain", "load_jsonl": ".data", "example_conversations": ".augment",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(name)
