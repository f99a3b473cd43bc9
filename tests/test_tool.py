"""Tool definitions of every supported kind become one ToolSpec."""

from __future__ import annotations

import inspect

import pytest

from toolken_agent.errors import ToolsetError
from toolken_agent.tool import ArgumentsError, Tool, ToolExample, snake_case, to_spec


class StockPrice(Tool):
    """Look up the latest price of a stock.

    Args:
        ticker: The ticker symbol, such as AAPL.
        exchange: Where it trades.
    """

    examples = [("What does Apple trade at?", {"ticker": "AAPL"})]

    def run(self, ticker: str, exchange: str = "NASDAQ") -> float:
        return 1.0


def test_tool_subclass_spec_takes_docstring_signature_and_snake_case_name():
    spec = to_spec(StockPrice)
    assert spec.name == "stock_price"
    assert spec.description == "Look up the latest price of a stock."
    assert spec.parameters["required"] == ["ticker"]
    assert spec.parameters["properties"]["ticker"]["description"] == "The ticker symbol, such as AAPL."
    assert spec.parameters["properties"]["exchange"]["default"] == "NASDAQ"
    assert spec.examples == (ToolExample("What does Apple trade at?", {"ticker": "AAPL"}),)


def test_snake_case_handles_acronyms():
    assert snake_case("HTTPGet") == "http_get"
    assert snake_case("StockPrice") == "stock_price"
    assert snake_case("Add") == "add"


def test_validation_converts_types_and_rejects_bad_arguments():
    spec = to_spec(StockPrice)
    assert spec.validate({"ticker": "AAPL"}) == {"ticker": "AAPL", "exchange": "NASDAQ"}
    with pytest.raises(ArgumentsError, match="ticker"):
        spec.validate({})
    with pytest.raises(ArgumentsError, match="JSON object"):
        spec.validate(["AAPL"])


def test_plain_function_is_a_tool():
    def convert_currency(amount: float, to: str) -> float:
        """Convert an amount of US dollars into another currency."""
        return amount

    spec = to_spec(convert_currency)
    assert spec.name == "convert_currency"
    assert set(spec.parameters["properties"]) == {"amount", "to"}
    assert spec.func(**spec.validate({"amount": "2.5", "to": "EUR"})) == 2.5


def test_langchain_tool_is_a_tool_unchanged():
    from langchain_core.tools import tool

    @tool
    def lookup_capital(country: str) -> str:
        """Return the capital city of a country."""
        return {"France": "Paris"}.get(country, "unknown")

    spec = to_spec(lookup_capital)
    assert spec.name == "lookup_capital"
    assert "capital city" in spec.description
    assert spec.func(**spec.validate({"country": "France"})) == "Paris"
    with pytest.raises(ArgumentsError):
        spec.validate({"country": 3})


def test_tool_without_description_is_an_error():
    class Nameless(Tool):
        def run(self, x: int) -> int:
            return x

    with pytest.raises(ToolsetError, match="no description"):
        to_spec(Nameless)


def test_fingerprint_changes_with_description_and_schema():
    class A(Tool):
        """Do one thing."""

        def run(self, x: int) -> int:
            return x

    class B(Tool):
        """Do another thing."""

        name = "a"

        def run(self, x: int) -> int:
            return x

    class C(Tool):
        """Do one thing."""

        name = "a"

        def run(self, x: str) -> str:
            return x

    assert len({to_spec(A).fingerprint, to_spec(B).fingerprint, to_spec(C).fingerprint}) == 3


def test_unknown_objects_are_refused():
    with pytest.raises(ToolsetError, match="not a tool"):
        to_spec(42)


def test_docstrings_are_read_by_transformers_parser_sections_types_and_wrapped_lines_included():
    """The description stops at any section (Args, Returns, Raises); ``name (type):`` and wrapped lines are one field."""
    from transformers.utils.chat_template_utils import parse_google_format_docstring

    def convert_currency(amount: float, to: str) -> float:
        """Convert an amount of US dollars into another currency.

        Uses the day's reference rate.

        Args:
            amount (float): How many dollars,
                before fees.
            to: The ISO code of the currency wanted.

        Returns:
            The converted amount.

        Raises:
            ValueError: For an unknown currency.
        """
        return amount

    spec = to_spec(convert_currency)
    description, arg_docs, _ = parse_google_format_docstring(inspect.cleandoc(convert_currency.__doc__))
    assert spec.description == description == "Convert an amount of US dollars into another currency.\n\nUses the day's reference rate."
    props = spec.parameters["properties"]
    assert props["amount"]["description"] == arg_docs["amount"] == "How many dollars, before fees."
    assert props["to"]["description"] == "The ISO code of the currency wanted."
    assert props["amount"]["type"] == "number" and spec.validate({"amount": "2", "to": "EUR"}) == {"amount": 2.0, "to": "EUR"}
