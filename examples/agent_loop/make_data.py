"""Regenerate ``train.jsonl`` and ``test.jsonl`` for the office tools (deterministic).

    python examples/agent_loop/make_data.py [--seed 0] [--out examples/agent_loop]

``train.jsonl`` is call-only, the shape of public function-calling sets (xLAM/APIGen,
Glaive): a user request and the assistant's tool call, no tool result and no final
answer; 7 requests per tool (one per training template, values drawn with a seeded
random generator), plus 10 requests answered in words. ``test.jsonl`` is held out:
other templates and other values, 20 tool requests (every tool at least once) as
``{"question", "tool", "args"}`` and 10 requests that need no tool as
``{"question", "tool": null}``. Every call's arguments are checked against the tool's
schema before anything is written.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):
    sys.path.insert(0, str(HERE.parents[1]))

from examples.agent_loop.office_tools import TOOLS  # noqa: E402
from toolken_agent.toolset import make_toolset  # noqa: E402


def fmt(x: float) -> str:
    """A number as a user types it: ``5``, ``21.1``."""
    return str(int(x)) if float(x).is_integer() else str(x)


def num(x: float) -> float | int:
    """A number as it goes into the arguments: an int when whole."""
    return int(x) if float(x).is_integer() else x


CURRENCY_WORDS = {
    "USD": ["dollars", "USD", "US dollars", "bucks"],
    "EUR": ["euros", "EUR", "euro"],
    "GBP": ["pounds", "GBP", "British pounds"],
    "JPY": ["yen", "JPY", "Japanese yen"],
    "CHF": ["Swiss francs", "CHF"],
    "CAD": ["Canadian dollars", "CAD"],
    "AUD": ["Australian dollars", "AUD"],
    "INR": ["rupees", "INR", "Indian rupees"],
}

# Per tool: templates (train, test), value pools (train, test), and how a drawn value
# fills a template's slots and the call's arguments.
Tool = dict[str, Any]

TOOL_DATA: dict[str, Tool] = {
    "km_to_miles": {
        "train": [
            "How many miles is {km} km?",
            "convert {km} km to miles",
            "Could you tell me what {km} kilometers is in miles, please?",
            "{km}km in miles?",
            "I ran {km} kilometers this morning. How far is that in miles?",
            "The hotel is {km} km from the airport, what's that in miles?",
            "miles in {km} kilometres",
        ],
        "test": [
            "My commute is {km} kilometers each way. Roughly how many miles is that?",
            "What's {km} kilometers expressed in miles?",
        ],
        "values": ([5, 10, 21.1, 42.2, 3, 15, 100, 8, 250], [12, 7.5, 320]),
        "fill": lambda v: ({"km": fmt(v)}, {"km": num(v)}),
    },
    "celsius_to_fahrenheit": {
        "train": [
            "What is {c} degrees Celsius in Fahrenheit?",
            "convert {c}C to F",
            "It's {c}°C outside, what is that in Fahrenheit?",
            "{c} celsius to fahrenheit",
            "My oven says {c} degrees C. What's that in F?",
            "Can you convert {c} °C into Fahrenheit for me?",
            "How hot is {c} degrees Celsius in Fahrenheit?",
        ],
        "test": [
            "The thermostat reads {c} degrees Celsius. Tell me the Fahrenheit equivalent.",
            "fahrenheit for {c}°C please",
        ],
        "values": ([20, 37, 100, -5, 25, 180, 0, 30, 15], [22, -10, 40]),
        "fill": lambda v: ({"c": fmt(v)}, {"celsius": num(v)}),
    },
    "percent_of": {
        "train": [
            "What is {p}% of {n}?",
            "what's {p} percent of {n}",
            "Calculate {p} percent of {n}.",
            "I got a {p}% discount on a {n} dollar jacket. How much did I save?",
            "{p}% of {n}?",
            "Can you work out {p} percent of {n} for me?",
            "How much is {p}% of {n}?",
        ],
        "test": [
            "Out of {n} people surveyed, {p}% said yes. How many people is that?",
            "Find {p} percent of {n}.",
        ],
        "values": ([(15, 80), (20, 250), (12.5, 1200), (7, 64), (30, 39.99), (45, 500), (8, 18), (60, 75)],
                   [(35, 340), (4, 95), (22, 1500)]),
        "fill": lambda v: ({"p": fmt(v[0]), "n": fmt(v[1])}, {"percent": num(v[0]), "number": num(v[1])}),
    },
    "get_weather": {
        "train": [
            "What's the weather in {city}?",
            "weather {city}",
            "How is the weather in {city} today?",
            "Is it raining in {city} right now?",
            "Could you check the weather for {city}, please?",
            "I'm flying to {city} tomorrow, what's the weather like there?",
            "current weather in {city}?",
        ],
        "test": [
            "Do I need an umbrella in {city} today?",
            "Tell me the current conditions in {city}.",
        ],
        "values": (["Paris", "London", "Tokyo", "Berlin", "Madrid", "Sydney", "Mumbai", "Chicago", "Oslo"],
                   ["New York", "Rome", "Toronto", "Cairo", "Singapore"]),
        "fill": lambda v: ({"city": v}, {"city": v}),
    },
    "capital_of": {
        "train": [
            "What is the capital of {c}?",
            "capital of {c}",
            "What's {c}'s capital city?",
            "Which city is the capital of {c}?",
            "Can you tell me the capital of {c}?",
            "I always forget, what's the capital of {c}?",
            "{c} capital?",
        ],
        "test": [
            "Name the capital city of {c}.",
            "Quick geography question: {c}'s capital is which city?",
        ],
        "values": (["France", "Japan", "Brazil", "Canada", "Australia", "Egypt", "Germany", "Kenya", "India", "Turkey"],
                   ["Norway", "Argentina", "South Korea", "Portugal", "Poland"]),
        "fill": lambda v: ({"c": v}, {"country": v}),
    },
    "word_count": {
        "train": [
            'How many words are in "{t}"?',
            "word count: {t}",
            "Count the words in this sentence: {t}",
            'Can you count how many words this has? "{t}"',
            "how many words: {t}",
            'Please give me the word count of "{t}".',
            'I need the number of words in "{t}"',
        ],
        "test": [
            'My essay opens with "{t}" How many words is that?',
            "Number of words in the following text: {t}",
        ],
        "values": ([
            "The quick brown fox jumps over the lazy dog",
            "We are pleased to announce our new office in Lisbon",
            "Please find the signed contract attached",
            "All hands meeting moved to Thursday afternoon",
            "Lunch is on me today",
            "She sells sea shells by the sea shore",
            "Our mission is to make travel simple and affordable for everyone",
            "Never stop learning",
        ], [
            "It was a bright cold day in April and the clocks were striking thirteen.",
            "Thank you for your patience while we fix the login issue",
            "Coffee first then emails",
        ]),
        "fill": lambda v: ({"t": v}, {"text": v}),
    },
    "reverse_text": {
        "train": [
            'Reverse the text "{t}"',
            "reverse this: {t}",
            'Can you write "{t}" backwards?',
            "spell {t} backwards",
            'What is "{t}" reversed?',
            'Please reverse "{t}" for me.',
            'flip the characters of "{t}"',
        ],
        "test": [
            'Mirror the string "{t}" so it reads right to left.',
            'What does "{t}" look like written in reverse?',
        ],
        "values": (["hello world", "stressed", "OpenAI", "racecar", "banana split", "level up", "desserts", "good morning"],
                   ["drawer", "Toolken agent", "pineapple"]),
        "fill": lambda v: ({"t": v}, {"text": v}),
    },
    "days_between": {
        "train": [
            "How many days between {a} and {b}?",
            "days from {a} to {b}",
            "Count the days from {a} until {b}.",
            "How many days are there from {a} to {b}?",
            "My trip starts {a} and ends {b}. How many days is that?",
            "Could you calculate the number of days between {a} and {b}?",
            "{a} to {b}, how many days?",
        ],
        "test": [
            "I was hired on {a}; how many days until {b}?",
            "What's the day count between {a} and {b}?",
        ],
        "values": ([("2024-01-01", "2024-03-01"), ("2023-06-15", "2023-12-25"), ("2024-02-10", "2024-02-29"),
                    ("2022-09-01", "2023-09-01"), ("2024-05-03", "2024-08-19"), ("2023-11-20", "2024-01-07"),
                    ("2024-07-04", "2024-07-30"), ("2021-03-14", "2021-10-31")],
                   [("2024-04-08", "2024-12-31"), ("2023-01-15", "2023-05-02"), ("2025-02-01", "2025-03-17")]),
        "fill": lambda v: ({"a": v[0], "b": v[1]}, {"start_date": v[0], "end_date": v[1]}),
    },
    "convert_currency": {
        "train": [
            "Convert {amt} {f} to {t}",
            "How much is {amt} {f} in {t}?",
            "{amt} {f} to {t}",
            "What are {amt} {f} worth in {t}?",
            "I have {amt} {f}. How many {t} is that?",
            "Could you convert {amt} {f} into {t} please?",
            "exchange {amt} {f} for {t}",
        ],
        "test": [
            "If I change {amt} {f} at the bank, how many {t} do I get?",
            "The price is {amt} {f}; what's that in {t}?",
        ],
        "values": ([(100, "USD", "EUR"), (50, "EUR", "GBP"), (2000, "JPY", "USD"), (75, "GBP", "USD"),
                    (300, "CAD", "EUR"), (1000, "INR", "USD"), (45.5, "CHF", "EUR"), (120, "AUD", "JPY")],
                   [(250, "USD", "JPY"), (80, "EUR", "CHF"), (5000, "INR", "GBP")]),
        "fill": None,  # the currency words are drawn too: see currency_fill
    },
    "tip_amount": {
        "train": [
            "What's a {p}% tip on ${b}?",
            "tip on {b} at {p} percent",
            "Our dinner came to {b}. How much should I tip at {p}%?",
            "How much is a {p} percent tip on a {b} bill?",
            "Calculate the tip: bill {b}, {p}%.",
            "I want to leave {p}% on a {b} check, how much is that?",
            "{p}% tip for {b}?",
        ],
        "test": [
            "The bill is {b} and we want to tip {p} percent. What's the tip?",
            "Work out the {p}% gratuity on a bill of {b}.",
        ],
        "values": ([(62.5, 18), (40, 15), (120, 20), (33.8, 10), (85, 22), (210, 18), (19.99, 15), (54, 25)],
                   [(76.4, 18), (150, 12), (48, 20)]),
        "fill": lambda v: ({"b": fmt(v[0]), "p": fmt(v[1])}, {"bill": num(v[0]), "percent": num(v[1])}),
    },
    "bmi": {
        "train": [
            "What's my BMI if I weigh {w} kg and I'm {h} cm tall?",
            "bmi {w}kg {h}cm",
            "Calculate BMI for {w} kg, {h} cm.",
            "I'm {h} cm and {w} kilos, what is my body mass index?",
            "Can you work out the BMI of someone who is {h} cm tall and weighs {w} kg?",
            "body mass index for weight {w} kg height {h} cm",
            "My son is {h} cm and weighs {w} kg. What's his BMI?",
        ],
        "test": [
            "Height {h} cm, weight {w} kg. BMI?",
            "I weigh {w} kg at {h} centimeters; compute my body mass index please.",
        ],
        "values": ([(70, 175), (82, 180), (55, 160), (95, 188), (64.5, 170), (48, 152), (110, 192), (77, 168)],
                   [(68, 172), (90, 183), (59, 165)]),
        "fill": lambda v: ({"w": fmt(v[0]), "h": fmt(v[1])}, {"weight_kg": num(v[0]), "height_cm": num(v[1])}),
    },
    "create_reminder": {
        "train": [
            "Remind me to {text} {when}.",
            "Set a reminder to {text} {when}",
            "remind me {when} to {text}",
            "Can you create a reminder to {text} {when}?",
            "Please remind me to {text} {when}.",
            "Don't let me forget to {text} {when}.",
            "reminder: {text} {when}",
        ],
        "test": [
            "I need a nudge {when} to {text}.",
            "Could you make sure I remember to {text} {when}?",
        ],
        "values": ([("call mom", "tomorrow at 9am"), ("pay the electricity bill", "on Friday"),
                    ("water the plants", "tonight at 8"), ("book a dentist appointment", "next Monday"),
                    ("send the quarterly report", "in two hours"), ("pick up the dry cleaning", "at 5pm"),
                    ("renew my passport", "on March 3"), ("stretch", "every hour")],
                   [("buy milk", "tomorrow morning"), ("email Sarah the slides", "at noon on Thursday"),
                    ("take out the trash", "this evening")]),
        "fill": lambda v: ({"text": v[0], "when": v[1]}, {"text": v[0], "when": v[1]}),
    },
    "send_message": {
        "train": [
            'Send a message to {r} saying "{m}"',
            "text {r}: {m}",
            'Tell {r} "{m}"',
            'Can you message {r} "{m}"?',
            'Please send {r} a text: "{m}"',
            'message {r} "{m}"',
            "Shoot {r} a quick message: {m}",
        ],
        "test": [
            'Let {r} know: "{m}"',
            'Drop {r} a text that says "{m}"',
        ],
        "values": ([("Alice", "I'm running 10 minutes late"), ("Bob", "Dinner is at 7"), ("Mom", "Can you call me back?"),
                    ("David", "Happy birthday!"), ("Priya", "The meeting moved to 3pm"), ("Tom", "See you at the station"),
                    ("Lena", "Don't forget the tickets"), ("Grandpa", "Thanks for the package")],
                   [("Carlos", "Running late, start without me"), ("Emma", "I left my keys at your place"),
                    ("Jordan", "The report is ready for review")]),
        "fill": lambda v: ({"r": v[0], "m": v[1]}, {"recipient": v[0], "text": v[1]}),
    },
}

# Tools with a second test request (20 in all).
TWICE_IN_TEST = ("get_weather", "convert_currency", "km_to_miles", "capital_of", "tip_amount", "create_reminder",
                 "send_message")

NO_TOOL_TRAIN = [
    ("Hi there!", "Hello! What can I do for you?"),
    ("Thanks, that's all.", "You're welcome. Have a nice day!"),
    ("Can you write a short poem about autumn?", "Red leaves drift and fall,\ncool wind hums along the lane,\nthe year breathes slower."),
    ("What's a good name for a black cat?", "How about Shadow, Onyx or Midnight?"),
    ("Explain what photosynthesis is in one sentence.",
     "Photosynthesis is how plants use sunlight, water and carbon dioxide to make sugar and release oxygen."),
    ("Tell me a fun fact.", "Octopuses have three hearts."),
    ("How do I say thank you in French?", "Thank you in French is 'merci'."),
    ("Suggest a healthy breakfast.", "Try oatmeal with berries and a spoon of yogurt."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa."),
    ("good morning", "Good morning! How can I help today?"),
]

NO_TOOL_TEST = [
    "Hey, how's it going?",
    "Write a limerick about a cat.",
    "What does 'serendipity' mean?",
    "Give me three ideas for a birthday party.",
    "Who wrote Pride and Prejudice?",
    "Can you explain what a black hole is?",
    "What's your favorite color?",
    "Thank you so much!",
    "Suggest a title for my blog about hiking.",
    "How do I make a cup of tea?",
]


def currency_fill(rng: random.Random) -> Callable[[tuple], tuple[dict, dict]]:
    def fill(v: tuple) -> tuple[dict, dict]:
        amount, src, dst = v
        slots = {"amt": fmt(amount), "f": rng.choice(CURRENCY_WORDS[src]), "t": rng.choice(CURRENCY_WORDS[dst])}
        return slots, {"amount": num(amount), "from_currency": src, "to_currency": dst}
    return fill


def requests(split: str, rng: random.Random) -> list[tuple[str, str, dict]]:
    """``(question, tool, args)`` for every template of ``split`` ('train' or 'test')."""
    out = []
    for name, data in TOOL_DATA.items():
        templates = data[split]
        if split == "test" and name not in TWICE_IN_TEST:
            templates = templates[:1]
        pool = list(data["values"][0 if split == "train" else 1])
        rng.shuffle(pool)
        fill = data["fill"] or currency_fill(rng)
        for template, value in zip(templates, pool):
            slots, args = fill(value)
            out.append((template.format(**slots), name, args))
    return out


def train_lines(seed: int) -> list[dict]:
    rng = random.Random(seed)
    lines = []
    for question, name, args in requests("train", rng):
        call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
        lines.append({"messages": [{"role": "user", "content": question},
                                   {"role": "assistant", "content": None, "tool_calls": [call]}]})
    lines += [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in NO_TOOL_TRAIN]
    rng.shuffle(lines)
    return lines


def test_lines(seed: int) -> list[dict]:
    rng = random.Random(seed + 1)
    lines = [{"question": q, "tool": name, "args": args} for q, name, args in requests("test", rng)]
    lines += [{"question": q, "tool": None} for q in NO_TOOL_TEST]
    rng.shuffle(lines)
    return lines


def check(train: list[dict], test: list[dict]) -> None:
    """Every call validates against its tool's schema; no test question is a training one."""
    toolset = make_toolset(TOOLS)
    for line in train:
        for message in line["messages"]:
            for call in message.get("tool_calls") or []:
                toolset.get(call["function"]["name"]).validate(json.loads(call["function"]["arguments"]))
    for line in test:
        if line["tool"] is not None:
            toolset.get(line["tool"]).validate(line["args"])
    seen = {line["messages"][0]["content"].lower() for line in train}
    clash = [line["question"] for line in test if line["question"].lower() in seen]
    assert not clash, f"test questions also in training: {clash}"


def write_jsonl(path: Path, lines: list[dict]) -> None:
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    train, test = train_lines(args.seed), test_lines(args.seed)
    check(train, test)
    write_jsonl(args.out / "train.jsonl", train)
    write_jsonl(args.out / "test.jsonl", test)
    calls = sum(1 for line in train if line["messages"][-1].get("tool_calls"))
    print(f"train.jsonl: {len(train)} conversations ({calls} calls, {len(train) - calls} answered in words); "
          f"test.jsonl: {len(test)} requests ({sum(1 for t in test if t['tool'])} need a tool)")


if __name__ == "__main__":
    main()
