"""Home, kitchen, fitness and travel tools: a second toolset, written as another user would.

    toolken-agent tools examples/agent_loop/home_tools.py
    toolken-agent train --tools examples/agent_loop/home_tools.py --data examples/agent_loop/home_train.jsonl --out toolkens-home

Unlike the office tools, nothing here declares whether it has side effects (most users
don't), arguments are described with ``Annotated`` rather than an ``Args:`` block, and
the training data (``home_train.jsonl``) is in xLAM/APIGen's ``query``/``answers`` shape.
It was written after every training default had been chosen on the office tools, to
check them on tools and data they were not tuned on. Two tools act
(``add_to_shopping_list``, ``book_table``) on in-memory lists that :func:`reset` empties.
"""

from __future__ import annotations

from typing import Annotated, Literal

from langchain_core.tools import tool

SHOPPING_LIST: list[dict] = []
BOOKINGS: list[dict] = []
ACTED = {"shopping_list": SHOPPING_LIST, "bookings": BOOKINGS}  # what the acting tools did, by store


def reset() -> None:
    """Empty the acting tools' in-memory stores."""
    SHOPPING_LIST.clear()
    BOOKINGS.clear()


GRAMS_PER_CUP = {"flour": 125, "sugar": 200, "butter": 227, "rice": 185, "oats": 90}
KCAL_PER_MINUTE = {"walking": 4, "running": 11, "cycling": 8, "swimming": 9, "yoga": 3}
UTC_OFFSET = {"london": 0, "paris": 1, "berlin": 1, "new york": -5, "chicago": -6, "los angeles": -8,
              "tokyo": 9, "sydney": 10, "dubai": 4, "delhi": 5.5, "singapore": 8, "sao paulo": -3, "moscow": 3}
FLIGHTS = {  # minutes, either direction
    frozenset({"london", "new york"}): 470, frozenset({"paris", "tokyo"}): 830, frozenset({"berlin", "rome"}): 125,
    frozenset({"madrid", "lisbon"}): 80, frozenset({"sydney", "singapore"}): 490, frozenset({"dubai", "london"}): 445,
    frozenset({"chicago", "los angeles"}): 265, frozenset({"delhi", "dubai"}): 210, frozenset({"paris", "london"}): 75,
    frozenset({"tokyo", "singapore"}): 425, frozenset({"new york", "los angeles"}): 370, frozenset({"rome", "paris"}): 130,
}


def _num(x: float) -> float | int:
    x = round(float(x), 2)
    return int(x) if x.is_integer() else x


def _key(city: str) -> str:
    return " ".join(city.split()).lower()


@tool
def grams_to_cups(grams: Annotated[float, "weight in grams"],
                  ingredient: Annotated[Literal["flour", "sugar", "butter", "rice", "oats"], "what is measured"]) -> float:
    """Convert a weight of a baking ingredient in grams to US cups."""
    return _num(grams / GRAMS_PER_CUP[ingredient])


@tool
def scale_recipe(amount: Annotated[float, "quantity in the original recipe"],
                 servings: Annotated[int, "servings the recipe makes"],
                 new_servings: Annotated[int, "servings wanted"]) -> float:
    """Scale an ingredient quantity of a recipe to a different number of servings."""
    return _num(amount * new_servings / servings)


@tool
def running_pace(distance_km: Annotated[float, "distance run in km"], minutes: Annotated[float, "total time in minutes"]) -> str:
    """Work out the running pace in minutes per kilometer from a distance and a time."""
    seconds = round(minutes * 60 / distance_km)
    return f"{seconds // 60}:{seconds % 60:02d} min/km"


@tool
def calories_burned(activity: Annotated[Literal["walking", "running", "cycling", "swimming", "yoga"], "the exercise"],
                    minutes: Annotated[int, "how long, in minutes"]) -> int:
    """Estimate the calories burned by an exercise session."""
    return KCAL_PER_MINUTE[activity] * minutes


@tool
def flight_duration(origin: Annotated[str, "departure city"], destination: Annotated[str, "arrival city"]) -> str:
    """Look up the typical duration of a direct flight between two cities."""
    minutes = FLIGHTS.get(frozenset({_key(origin), _key(destination)}))
    if minutes is None:
        return f"No direct flight known between {origin} and {destination}."
    return f"{minutes // 60} h {minutes % 60:02d} min"


@tool
def time_difference(city: Annotated[str, "the city to compare"], other_city: Annotated[str, "the city compared with"]) -> float:
    """Find how many hours ahead one city's local time is compared with another city's."""
    a, b = UTC_OFFSET.get(_key(city)), UTC_OFFSET.get(_key(other_city))
    if a is None or b is None:
        raise ValueError(f"unknown city: {city if a is None else other_city}")
    return _num(a - b)


@tool
def paint_needed(area_m2: Annotated[float, "wall area in square meters"], coats: Annotated[int, "number of coats"] = 2) -> float:
    """Estimate the liters of paint needed to paint a wall area (10 m² per liter per coat)."""
    return _num(area_m2 * coats / 10)


@tool
def split_bill(total: Annotated[float, "the bill total"], people: Annotated[int, "number of people paying"]) -> float:
    """Split a restaurant bill evenly between people."""
    return _num(total / people)


@tool
def count_vowels(text: Annotated[str, "the text to look at"]) -> int:
    """Count the vowels (a, e, i, o, u) in a piece of text."""
    return sum(ch in "aeiou" for ch in text.lower())


@tool
def slugify(title: Annotated[str, "the title to turn into a slug"]) -> str:
    """Turn a title into a URL slug: lowercase words joined by hyphens."""
    words = "".join(ch if ch.isalnum() else " " for ch in title.lower()).split()
    return "-".join(words)


@tool
def add_to_shopping_list(item: Annotated[str, "what to buy"], quantity: Annotated[int, "how many"] = 1) -> str:
    """Add an item to the household shopping list."""
    SHOPPING_LIST.append({"item": item, "quantity": quantity})
    return f"Added {quantity} x {item} to the shopping list."


@tool
def book_table(restaurant: Annotated[str, "restaurant name"], people: Annotated[int, "party size"],
               time: Annotated[str, "when, e.g. 7pm"]) -> str:
    """Book a table at a restaurant."""
    BOOKINGS.append({"restaurant": restaurant, "people": people, "time": time})
    return f"Booked a table for {people} at {restaurant} at {time}."


TOOLS = [grams_to_cups, scale_recipe, running_pace, calories_burned, flight_duration, time_difference,
         paint_needed, split_bill, count_vowels, slugify, add_to_shopping_list, book_table]
