"""LangChain's own standard test suites for chat models, run against ChatToolken.

The unit suite needs no model (the constructor is cheap and loads nothing). The
integration suite runs on the embedded default model, SmolLM2-135M-Instruct, with
structured output decoded natively (``method="json_schema"``: the reply text held to the
schema) and JSON mode on (given a schema, JSON mode holds the reply to it too).
"""

from __future__ import annotations

from typing import Any

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
    def standard_chat_model_params(self) -> dict[str, Any]:
        # The suites' standard settings less api_key and max_retries, which ChatToolken
        # refuses: it runs the model in this process, with no key and no request to
        # retry (a refused setting is an error, not silently dropped). timeout is kept:
        # it is each reply's time budget.
        params = dict(super().standard_chat_model_params)  # type: ignore[misc]
        params.pop("api_key", None)
        params.pop("max_retries", None)
        return params

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def structured_output_kwargs(self) -> dict:
        return {"method": "json_schema"}

    @property
    def supports_json_mode(self) -> bool:
        return True


class TestChatToolkenUnit(ChatToolkenSettings, ChatModelUnitTests):
    pass


@pytest.mark.real_model
class TestChatToolkenIntegration(ChatToolkenSettings, ChatModelIntegrationTests):
    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # No timeout here: a reply cut by the clock would make these results depend on how
        # busy the machine is (tests/test_chat_toolken.py pins the timeout itself).
        params = dict(super().standard_chat_model_params)
        params.pop("timeout", None)
        return params
