"""LangChain's own standard test suites for chat models, run against ChatToolken.

The unit suite needs no model (the constructor is cheap and loads nothing). The
integration suite runs on the embedded default model, SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from toolken_agent import ChatToolken


class ChatToolkenSettings:
    """What both suites need to know about ChatToolken."""

    @property
    def chat_model_class(self) -> type[ChatToolken]:
        return ChatToolken

    @property
    def chat_model_params(self) -> dict:
        return {"model": "default"}

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True


class TestChatToolkenUnit(ChatToolkenSettings, ChatModelUnitTests):
    pass


@pytest.mark.real_model
class TestChatToolkenIntegration(ChatToolkenSettings, ChatModelIntegrationTests):
    pass
