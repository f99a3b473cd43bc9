"""Regenerate ``home_train.jsonl`` and ``home_test.jsonl`` for the home tools (deterministic).

    python examples/agent_loop/make_home_data.py [--seed 0] [--out examples/agent_loop]

``home_train.jsonl`` is in xLAM/APIGen's shape (``{"id", "query", "tools", "answers"}``,
``tools`` and ``answers`` JSON strings), call-only: 7 requests per tool (84), plus 10
requests answered in words (``"answers": "[]"`` with the reply as ``"answer"``).
``home_test.jsonl`` holds other templates and values: 20 tool requests (every tool at
least once) as ``{"question", "tool", "args"}`` and 10 that need no tool.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):
    sys.path.insert(0, str(HERE.parents[1]))

from examples.agent_loop.home_tools import TOOLS  # noqa: E402
from examples.agent_loop.make_data import fmt, num  # noqa: E402
from toolken_agent.toolset import make_toolset  # noqa: E402

# Per tool: (train templates, test templates, (train values, test values), fill).
TOOL_DATA: dict[str, dict[str, Any]] = {
    "grams_to_cups": {
        "train": ["How many cups is {g} g of {i}?", "convert {g} grams of {i} to cups", "{g}g {i} in cups?",
                  "My recipe says {g} grams of {i}. How many cups is that?", "cups in {g} grams of {i}",
                  "I need {g} g of {i} but only have measuring cups. How many cups?",
                  "What is {g} grams of {i} in US cups?"],
        "test": ["I'm baking and the scale is broken: {g} grams of {i}, how many cups should I use?",
                 "Express {g} g of {i} in cups."],
        "values": ([(250, "flour"), (100, "sugar"), (113, "butter"), (370, "rice"), (45, "oats"), (500, "flour"), (300, "sugar")],
                   [(180, "oats"), (454, "butter")]),
        "fill": lambda v: ({"g": fmt(v[0]), "i": v[1]}, {"grams": num(v[0]), "ingredient": v[1]}),
    },
    "scale_recipe": {
        "train": ["The recipe needs {a} eggs for {s} servings. How many for {n} servings?",
                  "scale {a} cups of milk from {s} servings to {n}", "A recipe for {s} uses {a} tablespoons of oil; I'm cooking for {n}.",
                  "{a} grams of pasta feeds {s}. How much do I need for {n} people?",
                  "Recipe serves {s} with {a} onions. Scale it to {n} servings.",
                  "adjust {a} cloves of garlic from {s} to {n} servings",
                  "If {a} potatoes make {s} portions, how many potatoes for {n} portions?"],
        "test": ["My soup recipe takes {a} carrots and serves {s}. We'll be {n} at dinner, how many carrots?",
                 "Rescale {a} cups of rice from a {s}-serving recipe to {n} servings."],
        "values": ([(3, 4, 6), (2, 2, 5), (4, 6, 3), (500, 4, 10), (2, 4, 8), (6, 3, 9), (5, 5, 2)], [(4, 4, 10), (3, 6, 4)]),
        "fill": lambda v: ({"a": fmt(v[0]), "s": v[1], "n": v[2]}, {"amount": num(v[0]), "servings": v[1], "new_servings": v[2]}),
    },
    "running_pace": {
        "train": ["I ran {d} km in {m} minutes. What's my pace?", "pace for {d} km in {m} min",
                  "What pace per kilometer is {d} km in {m} minutes?", "{d}k in {m} minutes, pace?",
                  "Calculate my running pace: {d} kilometers, {m} minutes.",
                  "My long run was {d} km and took {m} minutes. Minutes per km?",
                  "what is the min/km pace if I do {d} km in {m} minutes"],
        "test": ["Finished a {d} km race in {m} minutes today. How fast was that per kilometer?",
                 "Tell me the per-km pace for a {m}-minute run over {d} km."],
        "values": ([(5, 27), (10, 55), (21.1, 118), (8, 44), (3, 15), (42.2, 250), (12, 66)], [(7, 40), (15, 81)]),
        "fill": lambda v: ({"d": fmt(v[0]), "m": fmt(v[1])}, {"distance_km": num(v[0]), "minutes": num(v[1])}),
    },
    "calories_burned": {
        "train": ["How many calories do I burn {a} for {m} minutes?", "calories burned {a} {m} min",
                  "I did {m} minutes of {a}. How many calories is that?", "{m} minutes {a}: calories?",
                  "Estimate the calories burned by {m} minutes of {a}.",
                  "If I go {a} for {m} minutes, how many kcal will I burn?",
                  "kcal for {a}, {m} minutes"],
        "test": ["After {m} minutes of {a} this morning, roughly how many calories did I use up?",
                 "What's the energy burned in a {m} minute {a} session?"],
        "values": ([("running", 30), ("walking", 45), ("cycling", 60), ("swimming", 20), ("yoga", 50), ("running", 15), ("cycling", 90)],
                   [("swimming", 40), ("walking", 25)]),
        "fill": lambda v: ({"a": v[0], "m": v[1]}, {"activity": v[0], "minutes": v[1]}),
    },
    "flight_duration": {
        "train": ["How long is the flight from {o} to {d}?", "flight time {o} to {d}",
                  "How many hours does it take to fly from {o} to {d}?", "{o} to {d} flight duration?",
                  "I'm flying {o} to {d} next week. How long is the flight?",
                  "What's the usual flying time between {o} and {d}?", "duration of a direct flight {o} {d}"],
        "test": ["Planning a trip: roughly how long would I be in the air going from {o} to {d}?",
                 "Tell me the typical nonstop flight time between {o} and {d}."],
        "values": ([("London", "New York"), ("Paris", "Tokyo"), ("Berlin", "Rome"), ("Madrid", "Lisbon"), ("Dubai", "London"),
                    ("Chicago", "Los Angeles"), ("Delhi", "Dubai")],
                   [("Sydney", "Singapore"), ("Paris", "London")]),
        "fill": lambda v: ({"o": v[0], "d": v[1]}, {"origin": v[0], "destination": v[1]}),
    },
    "time_difference": {
        "train": ["What's the time difference between {a} and {b}?", "time difference {a} {b}",
                  "How many hours ahead is {a} compared to {b}?", "{a} vs {b} time zone difference?",
                  "If I call {a} from {b}, how many hours apart are we?",
                  "How far ahead is the clock in {a} than in {b}?", "hours between {a} and {b} time zones"],
        "test": ["I'm in {b} and my sister lives in {a}. How many hours ahead of me is she?",
                 "Compare the local time of {a} with {b}: what's the gap in hours?"],
        "values": ([("Tokyo", "London"), ("New York", "Paris"), ("Sydney", "Berlin"), ("Dubai", "London"), ("Singapore", "Chicago"),
                    ("Moscow", "New York"), ("Delhi", "Paris")],
                   [("Tokyo", "Los Angeles"), ("Berlin", "Sao Paulo")]),
        "fill": lambda v: ({"a": v[0], "b": v[1]}, {"city": v[0], "other_city": v[1]}),
    },
    "paint_needed": {
        "train": ["How much paint do I need for {a} square meters with {c} coats?", "paint for {a} m2, {c} coats",
                  "I'm painting a {a} m² wall with {c} coats. How many liters of paint?", "liters of paint: {a} sqm, {c} coats",
                  "Estimate the paint needed to cover {a} square meters in {c} coats.",
                  "My living room walls are {a} m². How much paint for {c} coats?",
                  "{c} coats over {a} square metres, how much paint"],
        "test": ["We're repainting the bedroom: about {a} square meters of wall, {c} coats. How many liters should I buy?",
                 "Paint quantity for a {a} m² fence with {c} coats?"],
        "values": ([(40, 2), (25, 3), (60, 2), (12, 1), (85, 2), (30, 2), (18, 3)], [(48, 2), (22, 3)]),
        "fill": lambda v: ({"a": fmt(v[0]), "c": v[1]}, {"area_m2": num(v[0]), "coats": v[1]}),
    },
    "split_bill": {
        "train": ["Split a bill of {t} between {p} people.", "split {t} by {p}", "Our dinner came to {t}. There are {p} of us. How much each?",
                  "{t} bill, {p} people, how much per person?", "How much does each of {p} friends pay on a {t} check?",
                  "divide the {t} restaurant bill among {p}", "We owe {t} in total, split evenly {p} ways."],
        "test": ["The pizza order was {t} and {p} of us are chipping in equally. What's each share?",
                 "Work out each person's part of a {t} tab shared by {p}."],
        "values": ([(120, 4), (87.5, 5), (64, 2), (230, 6), (45.6, 3), (99, 3), (310, 8)], [(96, 4), (143.5, 7)]),
        "fill": lambda v: ({"t": fmt(v[0]), "p": v[1]}, {"total": num(v[0]), "people": v[1]}),
    },
    "count_vowels": {
        "train": ['How many vowels are in "{t}"?', "count vowels: {t}", 'Count the vowels in the phrase "{t}".',
                  'vowels in "{t}"?', 'Can you tell me the number of vowels in "{t}"?',
                  'How many a, e, i, o, u letters does "{t}" have?', 'number of vowels in {t}'],
        "test": ['For a word game I need the vowel count of "{t}".', 'Tally up the vowels in "{t}", please.'],
        "values": (["banana bread", "good morning", "the quick brown fox", "rainbow", "education matters",
                    "sunny afternoon", "open sesame"], ["queue in line", "avocado toast"]),
        "fill": lambda v: ({"t": v}, {"text": v}),
    },
    "slugify": {
        "train": ['Make a URL slug for "{t}".', "slugify: {t}", 'Turn the title "{t}" into a slug.', 'slug for "{t}"?',
                  'What would the URL slug be for the post "{t}"?', 'Convert "{t}" to a url-friendly slug.',
                  'create a slug from {t}'],
        "test": ['My new blog post is called "{t}". Give me its slug.', 'Generate the web address slug of "{t}".'],
        "values": (["My First Post", "Ten Tips for Better Sleep", "Hello World!", "Summer Recipes 2024",
                    "Why Cats Purr", "The Best Hiking Trails", "How I Learned Python"], ["A Day in Rome", "Budget Travel Guide"]),
        "fill": lambda v: ({"t": v}, {"title": v}),
    },
    "add_to_shopping_list": {
        "train": ["Add {q} {i} to my shopping list.", "shopping list: {q} {i}", "Put {q} {i} on the shopping list please.",
                  "add {i} x{q} to the list", "Remember to buy {q} {i}, add it to the list.",
                  "We're out of {i}. Add {q} to the shopping list.", "Please add {q} {i} to the groceries list."],
        "test": ["Could you note {q} {i} on our shopping list?", "Don't let me forget {q} {i}: add them to the list."],
        "values": ([(6, "eggs"), (2, "lemons"), (1, "milk"), (3, "apples"), (4, "yogurts"), (2, "onions"), (1, "bread")],
                   [(5, "bananas"), (2, "tomatoes")]),
        "fill": lambda v: ({"q": v[0], "i": v[1]}, {"item": v[1], "quantity": v[0]}),
    },
    "book_table": {
        "train": ["Book a table at {r} for {p} at {t}.", "book {r}, {p} people, {t}", "Reserve a table for {p} at {r} at {t}, please.",
                  "table for {p} at {r} {t}", "Can you get us a table at {r} at {t}? We are {p}.",
                  "I'd like a reservation at {r} for {p} people at {t}.", "Make a booking at {r}: {p} guests, {t}."],
        "test": ["We're celebrating tonight: please reserve {r} for {p} of us at {t}.",
                 "Get a {t} table at {r} for a party of {p}."],
        "values": ([("Luigi's", 4, "7pm"), ("The Green Fork", 2, "8pm"), ("Sakura", 3, "12:30"), ("Chez Marie", 6, "7:30pm"),
                    ("Golden Dragon", 5, "6pm"), ("Blue Lagoon", 2, "9pm"), ("Casa Pepe", 8, "8:30pm")],
                   [("Bella Napoli", 4, "8pm"), ("The Oak Room", 2, "7pm")]),
        "fill": lambda v: ({"r": v[0], "p": v[1], "t": v[2]}, {"restaurant": v[0], "people": v[1], "time": v[2]}),
    },
}

NO_TOOL_TRAIN = [
    ("Good morning!", "Good morning! How can I help you today?"),
    ("Thank you so much.", "You're welcome!"),
    ("What's a good name for a golden retriever?", "How about Sunny, Maple or Biscuit?"),
    ("Write two lines about the rain.", "Soft rain on the glass,\nthe afternoon hums along."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa."),
    ("Give me an idea for a weekend hobby.", "Try sketching outdoors: all you need is a pencil and a notebook."),
    ("What is photosynthesis?", "Photosynthesis is how plants turn light, water and carbon dioxide into sugar and oxygen."),
    ("How do you say thank you in Italian?", "Thank you in Italian is 'grazie'."),
    ("Can you recommend a movie for tonight?", "You could watch 'The Grand Budapest Hotel', a light and funny film."),
    ("See you later!", "See you later! Take care."),
]

NO_TOOL_TEST = [
    "Hello, who am I talking to?",
    "Tell me something interesting about octopuses.",
    "What's the opposite of 'generous'?",
    "Write a one-sentence bedtime story.",
    "Which planet is known as the red planet?",
    "Any advice for a job interview?",
    "Cheers, that was helpful.",
    "Can you explain what a metaphor is?",
    "What rhymes with 'light'?",
    "Suggest a name for a bakery.",
]


def tools_field() -> str:
    """The ``tools`` field of an xLAM line: each tool's name, description and parameters."""
    toolset = make_toolset(TOOLS, "home")
    return json.dumps([{"name": s.name, "description": s.description, "parameters": s.parameters} for s in toolset.specs])


def train_lines(rng: random.Random) -> list[dict]:
    tools = tools_field()
    lines = []
    for name, data in TOOL_DATA.items():
        for template, value in zip(data["train"], data["values"][0]):
            slots, args = data["fill"](value)
            lines.append({"query": template.format(**slots), "tools": tools,
                          "answers": json.dumps([{"name": name, "arguments": args}])})
    lines += [{"query": q, "tools": tools, "answers": "[]", "answer": a} for q, a in NO_TOOL_TRAIN]
    rng.shuffle(lines)
    return [{"id": n, **line} for n, line in enumerate(lines)]


def test_lines(rng: random.Random) -> list[dict]:
    lines, names = [], list(TOOL_DATA)
    for n in range(20):  # every tool once, then the first eight a second time with the other template
        name = names[n % len(names)]
        data = TOOL_DATA[name]
        template, value = data["test"][n // len(names)], data["values"][1][n // len(names)]
        slots, args = data["fill"](value)
        lines.append({"question": template.format(**slots), "tool": name, "args": args})
    lines += [{"question": q, "tool": None} for q in NO_TOOL_TEST]
    rng.shuffle(lines)
    return lines


def check(lines: list[dict]) -> None:
    """Every call's arguments fit its tool's schema."""
    toolset = make_toolset(TOOLS, "home")
    for line in lines:
        for call in json.loads(line.get("answers", "[]")) if "answers" in line else (
                [{"name": line["tool"], "arguments": line["args"]}] if line.get("tool") else []):
            toolset.get(call["name"]).validate(call["arguments"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    for name, lines in (("home_train.jsonl", train_lines(rng)), ("home_test.jsonl", test_lines(rng))):
        check(lines)
        (args.out / name).write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
        print(f"{args.out / name}: {len(lines)} lines")


if __name__ == "__main__":
    main()
