"""Everyday office tools, written the way a new user writes LangChain tools.

    toolken-agent tools examples/agent_loop/office_tools.py
    toolken-agent train --tools examples/agent_loop/office_tools.py --data examples/agent_loop/train.jsonl --out toolkens-office

Thirteen ``@tool`` functions across unit conversion, arithmetic people do every day,
lookups in fixed tables, text, dates, money and health, plus two acting tools
(``create_reminder``, ``send_message``) that only append to in-memory lists
(:data:`REMINDERS`, :data:`OUTBOX`; :func:`reset` empties them). Every result is
deterministic and short, numbers rounded to 2 decimals, so that a final answer can quote
it. Each tool declares its side effects in ``metadata["read_only"]``.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from langchain_core.tools import tool

REMINDERS: list[dict[str, str]] = []
OUTBOX: list[dict[str, str]] = []
ACTED = {"reminders": REMINDERS, "messages": OUTBOX}  # what the acting tools did, by store


def reset() -> None:
    """Empty the acting tools' in-memory stores."""
    REMINDERS.clear()
    OUTBOX.clear()


WEATHER = {
    "paris": "Sunny, 24°C",
    "london": "Light rain, 15°C",
    "new york": "Cloudy, 19°C",
    "tokyo": "Clear, 27°C",
    "berlin": "Overcast, 17°C",
    "madrid": "Hot and sunny, 33°C",
    "rome": "Sunny, 29°C",
    "sydney": "Windy, 13°C",
    "toronto": "Partly cloudy, 16°C",
    "mumbai": "Heavy rain, 30°C",
    "cairo": "Clear, 35°C",
    "moscow": "Snow showers, -4°C",
    "chicago": "Thunderstorms, 22°C",
    "singapore": "Humid, 31°C",
    "oslo": "Foggy, 8°C",
}

CAPITALS = {
    "france": "Paris",
    "germany": "Berlin",
    "italy": "Rome",
    "spain": "Madrid",
    "portugal": "Lisbon",
    "japan": "Tokyo",
    "china": "Beijing",
    "india": "New Delhi",
    "brazil": "Brasília",
    "argentina": "Buenos Aires",
    "canada": "Ottawa",
    "australia": "Canberra",
    "egypt": "Cairo",
    "kenya": "Nairobi",
    "mexico": "Mexico City",
    "norway": "Oslo",
    "sweden": "Stockholm",
    "poland": "Warsaw",
    "turkey": "Ankara",
    "south korea": "Seoul",
}

# Units of each currency per US dollar (fixed, for a deterministic benchmark).
RATES = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 151.0, "CHF": 0.88, "CAD": 1.36, "AUD": 1.52, "INR": 83.0}
Currency = Literal["USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "INR"]


def _number(x: float) -> float | int:
    """``x`` rounded to 2 decimals; a whole number as an int (``5`` rather than ``5.0``)."""
    x = round(float(x), 2)
    return int(x) if x.is_integer() else x


@tool
def km_to_miles(km: float) -> float:
    """Convert a distance in kilometers to miles.

    Args:
        km: The distance in kilometers.
    """
    return _number(km * 0.621371)


@tool
def celsius_to_fahrenheit(celsius: float) -> float:
    """Convert a temperature from degrees Celsius to degrees Fahrenheit.

    Args:
        celsius: The temperature in degrees Celsius.
    """
    return _number(celsius * 9 / 5 + 32)


@tool
def percent_of(percent: float, number: float) -> float:
    """Compute a percentage of a number, such as 15 percent of 80.

    Args:
        percent: The percentage, for example 15 for 15%.
        number: The number to take the percentage of.
    """
    return _number(percent / 100 * number)


@tool
def get_weather(city: str) -> str:
    """Get the current weather for a city.

    Args:
        city: The city name, such as Paris or New York.
    """
    found = WEATHER.get(" ".join(city.split()).lower())
    if found is None:
        return f"No weather data for {city}."
    return found


@tool
def capital_of(country: str) -> str:
    """Look up the capital city of a country.

    Args:
        country: The country name, such as Japan.
    """
    found = CAPITALS.get(" ".join(country.split()).lower())
    if found is None:
        return f"Unknown country: {country}."
    return found


@tool
def word_count(text: str) -> int:
    """Count the number of words in a piece of text.

    Args:
        text: The text whose words to count.
    """
    return len(text.split())


@tool
def reverse_text(text: str) -> str:
    """Reverse a piece of text character by character.

    Args:
        text: The text to reverse.
    """
    return text[::-1]


@tool
def days_between(start_date: str, end_date: str) -> int | str:
    """Count the number of days from one date to another.

    Args:
        start_date: The first date, in ISO format YYYY-MM-DD.
        end_date: The second date, in ISO format YYYY-MM-DD.
    """
    try:
        return (date.fromisoformat(end_date) - date.fromisoformat(start_date)).days
    except ValueError:
        return f"Invalid date: use YYYY-MM-DD (got {start_date!r} and {end_date!r})."


@tool
def convert_currency(amount: float, from_currency: Currency, to_currency: Currency) -> float:
    """Convert an amount of money from one currency to another at fixed exchange rates.

    Args:
        amount: The amount of money to convert.
        from_currency: The currency code of the amount, such as USD.
        to_currency: The currency code to convert into, such as EUR.
    """
    return _number(amount / RATES[from_currency] * RATES[to_currency])


@tool
def tip_amount(bill: float, percent: float) -> float:
    """Calculate the tip to leave on a restaurant bill.

    Args:
        bill: The bill total.
        percent: The tip percentage, for example 18 for 18%.
    """
    return _number(bill * percent / 100)


@tool
def bmi(weight_kg: float, height_cm: float) -> float:
    """Calculate the body mass index (BMI) from a person's weight and height.

    Args:
        weight_kg: The weight in kilograms.
        height_cm: The height in centimeters.
    """
    return _number(weight_kg / (height_cm / 100) ** 2)


@tool
def create_reminder(text: str, when: str) -> str:
    """Create a reminder that alerts the user about something at a given time.

    Args:
        text: What to be reminded of.
        when: When to send the reminder, as the user said it, such as tomorrow at 9am.
    """
    REMINDERS.append({"text": text, "when": when})
    return f"Reminder set: {text} ({when})."


@tool
def send_message(recipient: str, text: str) -> str:
    """Send a text message to a contact.

    Args:
        recipient: The name of the person to message.
        text: The message to send.
    """
    OUTBOX.append({"recipient": recipient, "text": text})
    return f"Message sent to {recipient}."


for _t in (km_to_miles, celsius_to_fahrenheit, percent_of, get_weather, capital_of, word_count, reverse_text,
           days_between, convert_currency, tip_amount, bmi):
    _t.metadata = {"read_only": True}
for _t in (create_reminder, send_message):
    _t.metadata = {"read_only": False}
del _t

TOOLS = [
    km_to_miles,
    celsius_to_fahrenheit,
    percent_of,
    get_weather,
    capital_of,
    word_count,
    reverse_text,
    days_between,
    convert_currency,
    tip_amount,
    bmi,
    create_reminder,
    send_message,
]
