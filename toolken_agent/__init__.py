"""toolken-agent: tool calling for frozen language models through learned toolkens.

The LM stays frozen; each tool gets one output-embedding row (a *toolken*) initialized
from a prior embedding of its name and description, and trained on cached features.
"""

from .errors import CheckpointError, DataError, ModelError, ToolkenError, ToolsetError
from .model import FrozenLM, load_model
from .tool import Tool, ToolExample, ToolSpec, to_spec
from .toolkens import Toolkens
from .toolset import Toolset, load_toolset, make_toolset

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "DataError", "FrozenLM", "ModelError", "Tool", "ToolExample", "ToolSpec",
    "ToolkenError", "Toolkens", "Toolset", "ToolsetError", "load_model", "load_toolset",
    "make_toolset", "to_spec", "ChatToolken",
]


def __getattr__(name: str):
    # The LangChain chat model loads lazily so that core imports stay light.
    if name == "ChatToolken":
        from .integrations.langchain import ChatToolken

        return ChatToolken
    raise AttributeError(name)
