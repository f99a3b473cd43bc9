"""Scoring rules of `toolken-agent eval`."""

from __future__ import annotations

from toolken_agent.evaluation import answer_in_text, same_value


def test_numbers_compare_by_value_and_lists_in_order():
    assert same_value({"numbers": [37, 91]}, {"numbers": [37.0, 91]})
    assert not same_value({"numbers": [91, 37]}, {"numbers": [37, 91]})
    assert not same_value({"a": 1}, {"a": 1, "b": 2})
    assert not same_value(True, 1)


def test_answers_are_found_in_text_with_tolerance():
    assert answer_in_text(3367, "37 times 91 is 3,367.")
    assert answer_in_text("0.3333", "It is about 0.33333.")
    assert not answer_in_text(3367, "It is 3366.")
    assert answer_in_text("Paris", "The capital is paris.")
