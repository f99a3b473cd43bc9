"""An enum field's value: the one the request raised most over a request asking for nothing."""

from __future__ import annotations

import enum
from typing import Literal, Optional

import pytest
import torch

from toolken_agent.argument_mode import argument_messages
from toolken_agent.choices import CONTENT_FREE, MAX_CHOICES, choice_fields, value_starting, values_left, written_value
from toolken_agent.conversation import Message
from toolken_agent.decoding import CallFinished, Decoder, DecodeConfig
from toolken_agent.memo import memo
from toolken_agent.provenance import after_number, choice_order, grounded_choices, named_values, number_bound
from toolken_agent.tool import Tool
from toolken_agent.toolkens import Toolkens
from toolken_agent.toolset import make_toolset


class Paint(Tool):
    """Paint the fence in one colour."""

    read_only = True

    def run(self, color: Literal["red", "green", "blue", "yellow"], coats: int) -> str:
        return f"{coats} coats of {color}"


def test_choice_fields_are_the_top_level_string_enums_direct_or_optional():
    schema = {"properties": {
        "unit": {"type": "string", "enum": ["c", "f"]},
        "mode": {"anyOf": [{"type": "string", "enum": ["fast", "slow"]}, {"type": "null"}]},
        "level": {"type": "integer", "enum": [1, 2, 3]},
        "only": {"type": "string", "enum": ["one"]},
        "many": {"type": "string", "enum": [f"v{i}" for i in range(MAX_CHOICES + 1)]},
        "text": {"type": "string"},
    }}
    assert choice_fields(schema) == {"unit": ["c", "f"], "mode": ["fast", "slow"]}


class Speed(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


def test_a_tools_literal_optional_literal_and_enum_parameters_are_choice_fields():
    class Convert(Tool):
        """Convert."""

        def run(self, unit: Literal["c", "f"], mode: Optional[Literal["a", "b"]] = None, speed: Speed = Speed.FAST) -> str:
            return unit

    (spec,) = make_toolset([Convert]).specs
    assert choice_fields(dict(spec.parameters)) == {"unit": ["c", "f"], "mode": ["a", "b"], "speed": ["fast", "slow"]}


def test_a_value_starts_right_after_its_key_and_quote_only():
    fields = {"color": ["red"], "to": ["x"]}
    assert value_starting('{"coats":2,"color":"', fields) == "color"
    assert value_starting('{"color":"re', fields) is None
    assert value_starting('{"color":"red"', fields) is None
    assert value_starting('{"note":"the \\"to\\":\\"', fields) is None  # quotes inside a string are escaped


def _score(lm, ids: list[int], continuation: list[int]) -> float:
    """Log-probability of ``continuation`` after ``ids``, from one plain forward pass (no cache)."""
    with torch.no_grad():
        logits = lm.model(torch.tensor([ids + continuation])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return sum(float(logp[len(ids) - 1 + i, t]) for i, t in enumerate(continuation))


def _paint_call(toolkens, request: str, **config) -> dict:
    got = list(Decoder(toolkens).stream([Message("user", request)],
                                        DecodeConfig(tool_choice="paint", max_calls=1, max_new_tokens=1, **config),
                                        run_tools=False))
    (call,) = [e for e in got if isinstance(e, CallFinished)]
    assert not call.error
    return dict(call.call.args)


@pytest.mark.parametrize("request_text", ["Paint it like the sky, 2 coats", "1 coat, the colour of a banana please"])
def test_the_value_written_is_the_one_the_request_raised_most_over_a_content_free_request(tiny_lm, request_text):
    toolkens = Toolkens.from_priors(tiny_lm, make_toolset([Paint]), prior="random")
    (spec,) = toolkens.toolset.specs
    tokenizer, fmt = tiny_lm.tokenizer, toolkens.chat_format
    prompt = fmt.render(argument_messages(spec, [Message("user", request_text)]), add_generation_prompt=True).input_ids
    blank = fmt.render(argument_messages(spec, [Message("user", CONTENT_FREE)]), add_generation_prompt=True).input_ids
    opening = tokenizer.encode('{"color":"', add_special_tokens=False)
    values = ["red", "green", "blue", "yellow"]
    raised = {v: _score(tiny_lm, prompt + opening, tokenizer.encode(v + '"', add_special_tokens=False))
              - _score(tiny_lm, blank + opening, tokenizer.encode(v + '"', add_special_tokens=False)) for v in values}
    args = _paint_call(toolkens, request_text)
    assert args["color"] == max(raised, key=raised.get)
    assert isinstance(args["coats"], int)  # the field after the chosen value is written as before


def test_values_the_request_names_hold_the_field_and_enough_of_them_are_needed():
    schema = {"properties": {"a": {"type": "string", "enum": ["USD", "EUR", "CHF"]},
                             "b": {"type": "string", "enum": ["USD", "EUR", "CHF"]},
                             "size": {"anyOf": [{"type": "string", "enum": ["small", "large"]}, {"type": "null"}]},
                             "drink": {"$ref": "#/$defs/Drink"}},
              "$defs": {"Drink": {"type": "string", "enum": ["latte", "mocha"]}}}
    held = grounded_choices(schema, "Two large Lattes and 80 EUR in usd, please")["properties"]
    assert held["a"]["enum"] == held["b"]["enum"] == ["USD", "EUR"]  # two named for two fields
    assert held["size"]["anyOf"][0]["enum"] == ["large"] and held["size"]["anyOf"][1] == {"type": "null"}
    assert held["drink"]["enum"] == ["latte"] and "$ref" not in held["drink"]  # a plural names it too
    alone = grounded_choices(schema, "80 EUR in Swiss francs, a mochaccino")  # one currency for two fields
    assert alone["properties"]["a"] == schema["properties"]["a"] and alone["properties"]["drink"] == {"$ref": "#/$defs/Drink"}


def test_a_value_the_request_names_is_written_whatever_the_lm_leans_to(tiny_lm):
    toolkens = Toolkens.from_priors(tiny_lm, make_toolset([Paint]), prior="random")
    for color in ("red", "green", "blue", "yellow"):
        assert _paint_call(toolkens, f"1 coat of the {color} one please")["color"] == color
        assert _paint_call(toolkens, f"1 coat of the {color} one please", calibrated_choices=False)["color"] == color


def test_without_calibrated_choices_the_lm_writes_the_value_token_by_token(tiny_lm, monkeypatch):
    toolkens = Toolkens.from_priors(tiny_lm, make_toolset([Paint]), prior="random")
    chosen = []
    monkeypatch.setattr(Decoder, "_choose_value", lambda self, *a, **k: chosen.append(a) or [])
    args = _paint_call(toolkens, "Paint it like the sea, 2 coats", calibrated_choices=False)
    assert args["color"] in {"red", "green", "blue", "yellow"} and chosen == []
    _paint_call(toolkens, "Paint it like the sea, 2 coats")
    assert len(chosen) == 1  # with them (the default), asked once, for the one enum field


def test_a_tool_shown_its_own_examples_writes_its_enum_values_token_by_token_unless_asked(tiny_lm, monkeypatch):
    class ShownPaint(Paint):
        """Paint the fence in one colour."""

        examples = [("Paint it red, 2 coats", {"color": "red", "coats": 2}),
                    ("3 coats of green", {"color": "green", "coats": 3})]

    toolkens = Toolkens.from_priors(tiny_lm, make_toolset([ShownPaint]), prior="random")
    chosen = []
    monkeypatch.setattr(Decoder, "_choose_value", lambda self, *a, **k: chosen.append(a) or [])

    def call(**config):
        got = list(Decoder(toolkens).stream([Message("user", "Paint it like the sea, 2 coats")],
                                            DecodeConfig(tool_choice="shown_paint", max_calls=1, max_new_tokens=1,
                                                         **config), run_tools=False))
        assert [e for e in got if isinstance(e, CallFinished)]

    call()
    assert chosen == []
    call(calibrated_choices=True)  # asked for every tool
    assert len(chosen) == 1


def test_a_chosen_value_that_json_escapes_is_written_whole(tiny_lm):
    class Quote(Tool):
        """Say one of two lines."""

        read_only = True

        def run(self, line: Literal['say "hi"', "back\\slash", "plain"]) -> str:
            return line

    toolkens = Toolkens.from_priors(tiny_lm, make_toolset([Quote]), prior="random")
    for request in ('say "hi" please', "the back\\slash one"):
        got = list(Decoder(toolkens).stream([Message("user", request)],
                                            DecodeConfig(tool_choice="quote", max_calls=1, max_new_tokens=1),
                                            run_tools=False))
        (call,) = [e for e in got if isinstance(e, CallFinished)]
        assert not call.error and call.call.args["line"] in {'say "hi"', "back\\slash", "plain"}


@pytest.mark.real_model
@pytest.mark.parametrize("request_text, expected", [
    ("If I change 80 EUR at the bank, how many Swiss francs do I get?", ("EUR", "CHF")),
    ("How much is 45.5 CHF in EUR?", ("CHF", "EUR")),
    ("How many Swiss francs would 80 EUR buy?", ("EUR", "CHF")),  # the number's value, named last, is the source
    ("What's 60 GBP in USD?", ("GBP", "USD")),
])
def test_zero_shot_currencies_are_the_ones_the_request_names_on_the_default_model(smol_lm, request_text, expected):
    from examples.agent_loop import office_tools

    toolkens = Toolkens.from_priors(smol_lm, make_toolset([office_tools.convert_currency]))
    got = list(Decoder(toolkens).stream([Message("user", request_text)],
                                        DecodeConfig(tool_choice="convert_currency", max_calls=1, max_new_tokens=1),
                                        run_tools=False))
    (call,) = [e for e in got if isinstance(e, CallFinished)]
    assert (call.call.args["from_currency"], call.call.args["to_currency"]) == expected


def test_the_content_free_scores_kept_from_one_request_give_the_next_the_value_a_fresh_model_gives(tiny_lm):
    shared = Toolkens.from_priors(tiny_lm, make_toolset([Paint]), prior="random")
    requests = ["Paint it like the sea, 2 coats", "1 coat of the yellow one please", "green, 3 coats"]
    kept = [_paint_call(shared, r)["color"] for r in requests]
    fresh = [_paint_call(Toolkens.from_priors(tiny_lm, make_toolset([Paint]), prior="random"), r)["color"]
             for r in requests]
    assert kept == fresh and len(memo(shared, "choice_leanings", dict)) == 1


def test_a_deadline_passing_while_values_are_scored_ends_the_reply_on_time(tiny_lm, monkeypatch):
    from toolken_agent.decoding import _Run

    toolkens = Toolkens.from_priors(tiny_lm, make_toolset([Paint]), prior="random")
    scorings = []
    score = Decoder._log_probabilities
    monkeypatch.setattr(Decoder, "_log_probabilities", lambda self, *a: scorings.append(1) or score(self, *a))
    monkeypatch.setattr(_Run, "expired", lambda self: bool(scorings))  # the deadline passes once scoring starts
    got = list(Decoder(toolkens).stream([Message("user", "Paint it like the sea, 2 coats")],
                                        DecodeConfig(tool_choice="paint", max_calls=1, max_new_tokens=1), run_tools=False))
    assert got[-1].reason == "timeout" and not [e for e in got if isinstance(e, CallFinished)]
    assert len(scorings) == 1 and memo(toolkens, "choice_leanings", dict) == {}  # nothing half-scored is kept


def test_holding_an_optional_enum_leaves_its_other_branches_alone():
    schema = {"properties": {"pick": {"anyOf": [{"$ref": "#/$defs/Box"}, {"$ref": "#/$defs/Size"}, {"type": "null"}]}},
              "$defs": {"Box": {"type": "object", "properties": {}}, "Size": {"type": "string", "enum": ["small", "large"]}}}
    held = grounded_choices(schema, "a large one")["properties"]["pick"]["anyOf"]
    assert held == [{"$ref": "#/$defs/Box"}, {"type": "string", "enum": ["large"]}, {"type": "null"}]


CURRENCIES = ["USD", "EUR", "CHF", "JPY"]
PAIR = {"from_currency": CURRENCIES, "to_currency": CURRENCIES, "speed": ["fast", "slow"]}


def test_named_values_come_in_order_of_mention():
    assert named_values(CURRENCIES, "How much is 45.5 chf in EURs? Not USD") == ["CHF", "EUR", "USD"]
    assert named_values(CURRENCIES, "How many Swiss francs for 80 euros?") == []  # names, not the values


def test_a_field_value_is_read_back_only_once_its_string_closed():
    assert written_value('{"from_currency":"EUR","to_currency":"', "from_currency") == "EUR"
    assert written_value('{"from_currency":"EUR","to_currency":"', "to_currency") is None
    assert written_value('{"note":"a \\"b\\" c","x":1', "note") == 'a "b" c'


def test_once_the_named_values_are_taken_the_field_left_takes_one_the_request_does_not_name():
    # "80 EUR ... how many Swiss francs": one value named for two fields
    assert values_left("to_currency", PAIR, ["EUR"], '{"amount":80,"from_currency":"EUR","to_currency":"') == \
        ["USD", "CHF", "JPY"]
    assert values_left("from_currency", PAIR, ["EUR"], '{"amount":80,"from_currency":"') is None  # either could be it
    # the first field took another value: the named one must go to the field left
    assert values_left("to_currency", PAIR, ["EUR"], '{"from_currency":"USD","to_currency":"') == ["EUR"]
    assert values_left("to_currency", PAIR, [], '{"from_currency":"USD","to_currency":"') is None
    assert values_left("speed", PAIR, ["fast"], '{"speed":"') == ["fast"]  # a field alone with its named value


def test_named_values_as_many_as_the_fields_go_to_them_in_the_order_the_examples_show():
    opening = '{"amount":45.5,"from_currency":"'
    assert values_left("from_currency", PAIR, ["CHF", "EUR"], opening) == ["CHF", "EUR"]  # no order known
    assert values_left("from_currency", PAIR, ["CHF", "EUR"], opening, [("from_currency", "to_currency")]) == ["CHF"]
    assert values_left("from_currency", PAIR, ["CHF", "EUR"], opening, [("to_currency", "from_currency")]) == ["EUR"]
    assert values_left("to_currency", PAIR, ["CHF", "EUR"], opening + 'EUR","to_currency":"') == ["CHF"]


class Exchange(Tool):
    """Convert an amount of money between currencies."""

    read_only = True
    examples = [("How much is 45.5 CHF in EUR?", {"amount": 45.5, "from_currency": "CHF", "to_currency": "EUR"}),
                ("What are 2000 JPY worth in USD?", {"amount": 2000, "from_currency": "JPY", "to_currency": "USD"})]

    def run(self, amount: float, from_currency: Literal["USD", "EUR", "CHF", "JPY"],
            to_currency: Literal["USD", "EUR", "CHF", "JPY"]) -> str:
        return f"{amount} {from_currency} in {to_currency}"


def test_the_examples_order_of_two_named_values_is_kept_with_two_examples_and_none_against():
    (spec,) = make_toolset([Exchange]).specs
    assert choice_order(spec) == [("from_currency", "to_currency")]

    class OneExample(Exchange):
        """Convert an amount of money between currencies."""

        examples = Exchange.examples[:1] + [("75 pounds to bucks", {"amount": 75, "from_currency": "USD",
                                                                     "to_currency": "EUR"})]

    class Against(Exchange):
        """Convert an amount of money between currencies."""

        examples = Exchange.examples + [("in EUR, 9 CHF", {"amount": 9, "from_currency": "CHF", "to_currency": "EUR"})]

    assert choice_order(make_toolset([OneExample]).specs[0]) == []  # one example names both
    assert choice_order(make_toolset([Against]).specs[0]) == []


def test_a_value_named_right_after_a_number_is_the_one_the_number_goes_with():
    assert after_number(CURRENCIES, "How many CHF are 45.5 EUR?") == ["EUR"]
    assert after_number(CURRENCIES, "What hour is it in JST when it's 20 in CET?") == []  # CET is no currency
    assert after_number(["CET", "JST"], "What hour is it in JST when it's 20 in CET?") == ["CET"]  # one word between
    assert after_number(CURRENCIES, "USD 45 to the nice EUR") == []


def test_the_field_a_number_goes_with_is_the_one_the_examples_show_or_else_the_first_of_a_pair():
    (spec,) = make_toolset([Exchange]).specs
    assert number_bound(spec) == ["from_currency"]

    class Reversed(Exchange):
        """Convert an amount of money between currencies."""

        examples = [("How many CHF for 45.5 EUR?", {"amount": 45.5, "from_currency": "CHF", "to_currency": "EUR"}),
                    ("USD for 2000 JPY", {"amount": 2000, "from_currency": "USD", "to_currency": "JPY"})]

    class Mixed(Exchange):
        """Convert an amount of money between currencies."""

        examples = Exchange.examples + Reversed.examples[:1]

    class Unshown(Exchange):
        """Convert an amount of money between currencies."""

        examples = []

    assert number_bound(make_toolset([Reversed]).specs[0]) == ["to_currency"]
    assert number_bound(make_toolset([Mixed]).specs[0]) == []  # the examples disagree
    assert number_bound(make_toolset([Unshown]).specs[0]) == ["from_currency"]


def test_the_number_bound_value_goes_to_its_field_and_the_other_named_value_to_the_other():
    fields, opening = PAIR, '{"amount":1,"from_currency":"'
    assert values_left("from_currency", fields, ["CHF", "EUR"], opening, [("to_currency", "from_currency")],
                       ["from_currency"], ["EUR"]) == ["EUR"]  # the number beats the order of mention
    assert values_left("to_currency", fields, ["CHF", "EUR"], '{"to_currency":"', (), ["from_currency"], ["EUR"]) == \
        ["CHF"]
    assert values_left("to_currency", fields, ["EUR"], '{"to_currency":"', (), ["from_currency"], ["EUR"]) == \
        ["USD", "CHF", "JPY"]  # the only named value is the number's, for the other field


def _exchange_call(tiny_lm, request: str, tool: type = Exchange, **config) -> tuple[str, str]:
    toolkens = Toolkens.from_priors(tiny_lm, make_toolset([tool]), prior="random")
    got = list(Decoder(toolkens).stream([Message("user", request)],
                                        DecodeConfig(tool_choice=make_toolset([tool]).specs[0].name, max_calls=1,
                                                     max_new_tokens=1, **config),
                                        run_tools=False))
    (call,) = [e for e in got if isinstance(e, CallFinished)]
    assert not call.error
    return call.call.args["from_currency"], call.call.args["to_currency"]


@pytest.mark.parametrize("request_text", ["If I change 80 EUR, how many Swiss francs do I get?",
                                          "How many Swiss francs for 80 EUR?"])
def test_one_named_value_for_two_fields_goes_to_the_one_its_number_goes_with_and_not_the_other(tiny_lm, request_text):
    from_currency, to_currency = _exchange_call(tiny_lm, request_text)
    assert from_currency == "EUR" and to_currency != "EUR"


@pytest.mark.parametrize("request_text, expected", [("How many CHF are 9 JPY?", ("JPY", "CHF")),
                                                    ("From JPY to CHF, 9 please", ("JPY", "CHF")),
                                                    ("From CHF to JPY, 9 please", ("CHF", "JPY"))])
def test_two_named_values_go_by_their_number_else_by_the_order_the_tools_examples_name_them(tiny_lm, request_text,
                                                                                            expected):
    assert _exchange_call(tiny_lm, request_text) == expected
    assert _exchange_call(tiny_lm, request_text, calibrated_choices=False) == expected  # a rule, not a score


def test_a_tool_without_examples_gives_the_numbers_value_to_the_first_field_of_the_pair(tiny_lm):
    class Unshown(Exchange):
        """Convert an amount of money between currencies."""

        examples = []

    assert _exchange_call(tiny_lm, "How many CHF are 9 JPY?", Unshown) == ("JPY", "CHF")
    assert _exchange_call(tiny_lm, "How many JPY are 9 CHF?", Unshown) == ("CHF", "JPY")
