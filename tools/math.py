"""FuncQA's 13 math operations as built-in tools.

ToolkenGPT's FuncQA benchmark gives a language model one toolken per operation:
``<add> <subtract> <multiply> <divide> <power> <sqrt> <log> <ln> <lcm> <gcd>
<remainder> <choose> <permutate>``. This module defines the same 13 operations as
:class:`~toolken_agent.tool.Tool` subclasses, listed in that order in :data:`TOOLS`.

Argument conventions follow FuncQA's data:

* ``add``, ``multiply``, ``lcm`` and ``gcd`` take a list ``numbers`` of two or more
  values, because FuncQA writes calls such as ``<add>(17.83, 18.99, 23.45, 14.12, 8.22)``
  and ``<lcm>(23, 33, 42)``;
* ``subtract``, ``divide`` and ``remainder`` take ``a`` and ``b`` (``a - b``, ``a / b``,
  ``a mod b``); ``power`` takes ``base`` and ``exponent``;
* ``sqrt``, ``log`` and ``ln`` take ``x``; ``log`` is base 10 unless ``base`` is given
  (ToolkenGPT's ``<log>(x)`` is the base-10 logarithm and ``<log>(x, b)`` the base-b one);
* ``choose`` and ``permutate`` take whole numbers ``n`` and ``k``.

Exactness and rounding
----------------------
Every input is read as the decimal number it was written as (a float's shortest
``repr``, so ``0.1`` is exactly one tenth) and the arithmetic is done with exact
fractions. Then:

1. an integer result is returned as a Python ``int`` (``choose(45, 7) == 45379620``,
   ``sqrt(1600) == 40``, ``log(1000) == 3``);
2. a non-integer result that is exactly a decimal of at most 15 significant digits is
   returned as the float with that decimal ``repr`` (``multiply([0.6273, 3.14159]) ==
   1.970719407``, ``divide(1, 8) == 0.125``);
3. any other result (``1/3``, square roots, logarithms, long decimals) is a float
   rounded to 4 decimal places, as FuncQA's answers are (``divide(327.87, 52) ==
   6.3052``); results smaller than 0.1 in size keep 4 significant digits instead
   (``sqrt(0.0001234) == 0.01111``), so that small values do not round to zero.

Numbers in a JSON schema ``number`` field arrive as floats, so integers beyond 2**53
given to ``add``, ``multiply`` etc. through the schema are already rounded; called
directly from Python, ``run`` takes ints (and ``Fraction``/``Decimal``) exactly.

Errors (division by zero, the square root of a negative number, the logarithm of a
non-positive number or to base 1, zero to a negative power, a negative number to a
fractional power, a fraction where a whole number is needed, fewer than two numbers
in a list, and inputs whose result would be enormous or slow to compute) raise
:class:`ValueError` with a message that says what was wrong. Integer inputs and
results are limited to :data:`MAX_RESULT_DIGITS` digits, other results to the float
range; ``choose``/``permutate`` take ``n`` up to :data:`MAX_COMBINATORICS_N`. Sizes
are estimated before anything is computed, so no input makes a tool run for long or
use much memory. (The checks live in ``run`` rather than in ``Annotated`` constraints
because the schema is built from ``get_type_hints``, which drops ``Annotated``.)

``remainder`` follows Python's ``%``: the result has the sign of the divisor.
``choose(n, k)`` and ``permutate(n, k)`` are 0 when ``k > n`` (no way to do it).
"""

from __future__ import annotations

import decimal
import math
import sys
from fractions import Fraction
from typing import Any

from toolken_agent.tool import Tool, ToolExample

__all__ = [
    "Add",
    "Subtract",
    "Multiply",
    "Divide",
    "Power",
    "Sqrt",
    "Log",
    "Ln",
    "Lcm",
    "Gcd",
    "Remainder",
    "Choose",
    "Permutate",
    "TOOLS",
    "MAX_RESULT_DIGITS",
    "MAX_LIST_LENGTH",
    "MAX_COMBINATORICS_N",
]

#: Largest number of digits an integer input or result may have.
MAX_RESULT_DIGITS = 1000
#: Most numbers ``add``, ``multiply``, ``lcm`` and ``gcd`` accept in one call.
MAX_LIST_LENGTH = 100
#: Largest ``n`` accepted by ``choose`` and ``permutate``.
MAX_COMBINATORICS_N = 10**6

#: Decimal places kept in a rounded result (FuncQA answers keep 4).
ROUND_DECIMALS = 4
#: Significant digits kept in a rounded result smaller than 0.1 in size.
ROUND_SIGNIFICANT = 4
#: Non-integer exact results up to this many significant digits are not rounded.
EXACT_DECIMAL_DIGITS = 15

_MAX_BITS = math.ceil(MAX_RESULT_DIGITS * math.log2(10))
# Bound on the bits of the numerator and denominator of an intermediate exact value;
# beyond it a computation falls back to floating point (or is refused as too large).
_MAX_EXACT_BITS = 20_000
_FLOAT_MAX_LOG10 = math.log10(sys.float_info.max)

# --------------------------------------------------------------------------- helpers


def _exact(value: Any, what: str) -> Fraction:
    """``value`` as an exact fraction; a float is read as the decimal it prints as."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, not {value!r}")
    if isinstance(value, int):
        if value.bit_length() > _MAX_BITS:
            raise ValueError(f"{what} is too large (more than {MAX_RESULT_DIGITS} digits)")
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{what} must be a finite number, got {value!r}")
        # repr is the shortest decimal that round-trips: 0.1 -> '0.1' -> 1/10.
        return Fraction(repr(value))
    if isinstance(value, Fraction):
        frac = value
    elif isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise ValueError(f"{what} must be a finite number, got {value}")
        if abs(value.adjusted()) > MAX_RESULT_DIGITS:
            raise ValueError(f"{what} is too large or too small (more than {MAX_RESULT_DIGITS} digits)")
        frac = Fraction(value)
    else:
        raise ValueError(f"{what} must be a number, got {type(value).__name__}")
    if frac.numerator.bit_length() > _MAX_BITS or frac.denominator.bit_length() > _MAX_BITS:
        raise ValueError(f"{what} has too many digits (more than {MAX_RESULT_DIGITS})")
    return frac


def _whole(value: Any, what: str) -> int:
    """``value`` as an int; whole-valued floats such as ``6.0`` are accepted."""
    frac = _exact(value, what)
    if frac.denominator != 1:
        raise ValueError(f"{what} must be a whole number, got {_show(value)}")
    return frac.numerator


def _numbers(values: Any, what: str = "numbers") -> list[Fraction]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{what} must be a list of numbers")
    values = list(values)
    if len(values) < 2:
        raise ValueError(f"{what} must contain at least two numbers, got {len(values)}")
    if len(values) > MAX_LIST_LENGTH:
        raise ValueError(f"{what} may contain at most {MAX_LIST_LENGTH} numbers, got {len(values)}")
    return [_exact(v, f"{what}[{i}]") for i, v in enumerate(values)]


def _whole_numbers(values: Any, what: str = "numbers") -> list[int]:
    fracs = _numbers(values, what)
    for i, frac in enumerate(fracs):
        if frac.denominator != 1:
            raise ValueError(f"{what}[{i}] must be a whole number, got {float(frac)!r}")
    return [f.numerator for f in fracs]


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, (int, float)) else str(value)


def _log10_abs(frac: Fraction) -> float:
    """log10 of ``|frac|`` (``frac != 0``), safe for huge numerators and denominators."""
    return math.log10(abs(frac.numerator)) - math.log10(frac.denominator)


def _check_int_size(value: int) -> int:
    if value.bit_length() > _MAX_BITS:
        raise ValueError(f"the result is too large (more than {MAX_RESULT_DIGITS} digits)")
    return value


def _round(x: float) -> float:
    """Round an inexact result: 4 decimals, or 4 significant digits below 0.1."""
    if not math.isfinite(x):
        raise ValueError("the result is too large to represent")
    if x == 0:
        return 0.0
    magnitude = math.floor(math.log10(abs(x)))
    decimals = max(ROUND_DECIMALS, ROUND_SIGNIFICANT - 1 - magnitude)
    return round(x, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0


def _finish(result: Fraction) -> int | float:
    """Turn an exact result into what a tool returns (see the module docstring)."""
    if result.denominator == 1:
        return _check_int_size(result.numerator)
    if result.numerator.bit_length() <= _MAX_BITS and result.denominator.bit_length() <= _MAX_BITS:
        ctx = decimal.Context(prec=EXACT_DECIMAL_DIGITS, traps=[], Emin=-999_999, Emax=999_999)
        quotient = ctx.divide(decimal.Decimal(result.numerator), decimal.Decimal(result.denominator))
        if not ctx.flags[decimal.Inexact]:
            value = float(quotient)
            if math.isfinite(value) and value != 0:
                return value
    try:
        approx = float(result)
    except OverflowError:
        raise ValueError("the result is too large to represent") from None
    return _round(approx)


def _nth_root(n: int, k: int) -> int | None:
    """The integer ``r >= 0`` with ``r**k == n`` (``n >= 0``), or ``None`` if there is none."""
    if n < 2:
        return n
    # Newton's method on integers, started above the root.
    r = 1 << -(-n.bit_length() // k)
    while True:
        s = ((k - 1) * r + n // r ** (k - 1)) // k
        if s >= r:
            break
        r = s
    return r if r**k == n else None


def _exact_root(frac: Fraction, k: int) -> Fraction | None:
    """The exact non-negative ``k``-th root of ``frac >= 0``, if it is rational."""
    num = _nth_root(frac.numerator, k)
    if num is None:
        return None
    den = _nth_root(frac.denominator, k)
    if den is None:
        return None
    return Fraction(num, den)


def _exact_power(base: Fraction, exponent: int) -> Fraction | None:
    """``base ** exponent`` exactly, or ``None`` if the exact value would be too big to hold."""
    bits = base.numerator.bit_length() + base.denominator.bit_length()
    if abs(exponent) * bits > _MAX_EXACT_BITS:
        return None
    return base**exponent


def _exact_log(x: Fraction, base: Fraction, approx: float) -> Fraction | None:
    """``log_base(x)`` as a fraction when it is one with a small denominator, else ``None``.

    ``approx`` is the floating-point value; the candidate fraction nearest to it is
    checked exactly (``base**p == x**q``).
    """
    candidate = Fraction(approx).limit_denominator(64)
    if abs(float(candidate) - approx) > 1e-9 * max(1.0, abs(approx)):
        return None
    p, q = candidate.numerator, candidate.denominator
    lhs = _exact_power(base, p)
    rhs = _exact_power(x, q)
    if lhs is None or rhs is None:
        return None
    return candidate if lhs == rhs else None


def _ln(frac: Fraction) -> float:
    """Natural log of ``frac > 0``: accurate near 1, safe for huge or tiny values."""
    if Fraction(1, 2) < frac < 2:
        return math.log1p(float(frac - 1))
    if Fraction(1, 10**300) < frac < 10**300:
        return math.log(float(frac))
    return math.log(frac.numerator) - math.log(frac.denominator)


# ----------------------------------------------------------------------------- tools


class _Pure(Tool):
    """Base of the math tools: they only compute, so they run without asking."""

    read_only = True


class Add(_Pure):
    """Add two or more numbers together and return their sum (addition, plus, total).

    Args:
        numbers: the numbers to add up, at least two.
    """

    examples = [
        ToolExample("What is 12 plus 7?", {"numbers": [12, 7]}),
        ToolExample("Add 3.75 and 18.2.", {"numbers": [3.75, 18.2]}),
        ToolExample("What's the sum of 251 and 117?", {"numbers": [251, 117]}),
        ToolExample(
            "A recipe calls for 76 cups of flour and 18 cups of sugar. How many cups of ingredients in total?",
            {"numbers": [76, 18]},
        ),
        ToolExample(
            "I spent 17.83, 18.99 and 23.45 dollars on three books. How much did I spend altogether?",
            {"numbers": [17.83, 18.99, 23.45]},
        ),
        ToolExample("Calculate 0.384 + 1.63", {"numbers": [0.384, 1.63]}),
        ToolExample("If you have -15 and add 40, what do you get?", {"numbers": [-15, 40]}),
        ToolExample(
            "A store sold 147 bananas today and 354 tomorrow. How many bananas in total?",
            {"numbers": [147, 354]},
        ),
        ToolExample("Total of 19543778.4 and 632361, please.", {"numbers": [19543778.4, 632361]}),
        ToolExample("Sum up 5, 10, 15 and 20.", {"numbers": [5, 10, 15, 20]}),
    ]

    def run(self, numbers: list[float]) -> int | float:
        return _finish(sum(_numbers(numbers), Fraction(0)))


class Subtract(_Pure):
    """Subtract one number from another and return the difference (minus, take away).

    Args:
        a: the number to subtract from.
        b: the number to take away from a; the result is a - b.
    """

    examples = [
        ToolExample("What is 100 minus 37?", {"a": 100, "b": 37}),
        ToolExample("Subtract 11.99 from 789.4.", {"a": 789.4, "b": 11.99}),
        ToolExample("Compute 892 - 134", {"a": 892, "b": 134}),
        ToolExample(
            "A company has 362 employees. If 131 leave, how many are left?",
            {"a": 362, "b": 131},
        ),
        ToolExample("What's the difference between 29.47 and 8.9832?", {"a": 29.47, "b": 8.9832}),
        ToolExample("Take 2.5 away from 10.", {"a": 10, "b": 2.5}),
        ToolExample(
            "I had 1028137.23 dollars and spent 79952.88. How much do I have now?",
            {"a": 1028137.23, "b": 79952.88},
        ),
        ToolExample("How much is 5 less than 3?", {"a": 3, "b": 5}),
        ToolExample("The temperature was 12 degrees and dropped by 20. What is it now?", {"a": 12, "b": 20}),
    ]

    def run(self, a: float, b: float) -> int | float:
        return _finish(_exact(a, "a") - _exact(b, "b"))


class Multiply(_Pure):
    """Multiply two or more numbers together and return their product (times).

    Args:
        numbers: the numbers to multiply, at least two.
    """

    examples = [
        ToolExample("What is 12 times 7?", {"numbers": [12, 7]}),
        ToolExample("Compute the product of 3.5 and 8.", {"numbers": [3.5, 8]}),
        ToolExample("I bought 4 boxes of 25 pens. How many pens do I have?", {"numbers": [4, 25]}),
        ToolExample(
            "A pizza costs 160.63 dollars and you buy 47 pizzas. How much do you spend?",
            {"numbers": [160.63, 47]},
        ),
        ToolExample("Multiply 0.6273 by 3.14159.", {"numbers": [0.6273, 3.14159]}),
        ToolExample(
            "A factory makes 34 units an hour. How many units in 395 hours?",
            {"numbers": [34, 395]},
        ),
        ToolExample("What is -6 x 9?", {"numbers": [-6, 9]}),
        ToolExample(
            "A box is 2.5 m long, 3 m wide and 4 m tall. What is its volume?",
            {"numbers": [2.5, 3, 4]},
        ),
        ToolExample("Calculate 0.848 * 0.3766", {"numbers": [0.848, 0.3766]}),
    ]

    def run(self, numbers: list[float]) -> int | float:
        values = _numbers(numbers)
        if any(v == 0 for v in values):
            return 0
        # Refuse an enormous product before computing it.
        if sum(_log10_abs(v) for v in values) > MAX_RESULT_DIGITS + 1:
            raise ValueError(f"the result is too large (more than {MAX_RESULT_DIGITS} digits)")
        product = Fraction(1)
        for v in values:
            product *= v
        return _finish(product)


class Divide(_Pure):
    """Divide one number by another and return the quotient.

    Args:
        a: the number to be divided (the dividend).
        b: the number to divide by (the divisor); the result is a / b.
    """

    examples = [
        ToolExample("What is 84 divided by 7?", {"a": 84, "b": 7}),
        ToolExample("Divide 327.87 by 52.", {"a": 327.87, "b": 52}),
        ToolExample(
            "A store sells 494 candy bars for 239.68 dollars. How much does one candy bar cost?",
            {"a": 239.68, "b": 494},
        ),
        ToolExample("Compute 1 / 8", {"a": 1, "b": 8}),
        ToolExample(
            "A car travels 314.2 miles on 79.04 gallons of gas. How many miles per gallon is that?",
            {"a": 314.2, "b": 79.04},
        ),
        ToolExample("Split a 3.77 pound cake into 13 equal pieces. How much does each weigh?", {"a": 3.77, "b": 13}),
        ToolExample("What is the ratio of 216.3 to 26.2823?", {"a": 216.3, "b": 26.2823}),
        ToolExample("How many 60-minute hours are there in 1943 minutes?", {"a": 1943, "b": 60}),
        ToolExample("What's one third of 100?", {"a": 100, "b": 3}),
    ]

    def run(self, a: float, b: float) -> int | float:
        divisor = _exact(b, "b")
        if divisor == 0:
            raise ValueError("cannot divide by zero")
        return _finish(_exact(a, "a") / divisor)


class Power(_Pure):
    """Raise a number to a power (exponentiation) and return the result.

    Args:
        base: the number to raise.
        exponent: the power to raise it to; the result is base ** exponent.
    """

    examples = [
        ToolExample("What is 2 to the power of 10?", {"base": 2, "exponent": 10}),
        ToolExample("Compute 3^24.", {"base": 3, "exponent": 24}),
        ToolExample(
            "A car loses 11% of its value every year. What fraction of its price is left after 8 years?",
            {"base": 0.89, "exponent": 8},
        ),
        ToolExample(
            "A city's population grows by 2% a year. By what factor does it grow in 31 years?",
            {"base": 1.02, "exponent": 31},
        ),
        ToolExample(
            "A cube has a side of 1.31 meters. What is its volume in cubic meters?",
            {"base": 1.31, "exponent": 3},
        ),
        ToolExample("What is 7.777 squared?", {"base": 7.777, "exponent": 2}),
        ToolExample("Raise 6 to the -2 power.", {"base": 6, "exponent": -2}),
        ToolExample("What is 16 to the power 0.25?", {"base": 16, "exponent": 0.25}),
        ToolExample(
            "A computer's speed doubles every year. How many times faster is it after 6 years?",
            {"base": 2, "exponent": 6},
        ),
    ]

    def run(self, base: float, exponent: float) -> int | float:
        b = _exact(base, "base")
        e = _exact(exponent, "exponent")
        if e == 0:
            return 1
        if b == 0:
            if e < 0:
                raise ValueError("cannot raise zero to a negative power (it divides by zero)")
            return 0
        if abs(b) == 1 and e.denominator == 1:
            return 1 if (b == 1 or e.numerator % 2 == 0) else -1
        if b < 0 and e.denominator != 1:
            raise ValueError(
                f"cannot raise a negative number ({_show(base)}) to a fractional power ({_show(exponent)})"
            )
        if abs(e) > 10**300:  # an exponent beyond the float range
            if (abs(b) > 1) == (e > 0):
                raise ValueError(f"the result is too large (more than {MAX_RESULT_DIGITS} digits)")
            return 0.0  # vanishingly small
        # Size of the result, checked before anything is computed.
        magnitude = float(e) * _log10_abs(b)
        if magnitude > MAX_RESULT_DIGITS:
            raise ValueError(f"the result is too large (more than {MAX_RESULT_DIGITS} digits)")
        if e.denominator == 1:
            exact = _exact_power(b, e.numerator)
            if exact is not None:
                return _finish(exact)
        elif e.denominator <= 1000:
            root = _exact_root(b, e.denominator)
            if root is not None:
                exact = _exact_power(root, e.numerator)
                if exact is not None:
                    return _finish(exact)
        # No exact value within bounds: compute in floating point.
        if magnitude < -400:
            return 0.0  # below the smallest float
        if magnitude > _FLOAT_MAX_LOG10:
            raise ValueError("the result is too large to represent")
        sign = -1.0 if (b < 0 and e.numerator % 2 == 1) else 1.0
        try:
            if Fraction(1, 10**300) < abs(b) < 10**300:
                value = math.pow(float(abs(b)), float(e))
            else:  # |base| itself is beyond the float range
                value = 10.0**magnitude
        except OverflowError:
            raise ValueError("the result is too large to represent") from None
        return _round(sign * value)


class Sqrt(_Pure):
    """Compute the square root of a number.

    Args:
        x: the number to take the square root of; must not be negative.
    """

    examples = [
        ToolExample("What is the square root of 144?", {"x": 144}),
        ToolExample("Find the square root of 7876.56.", {"x": 7876.56}),
        ToolExample(
            "A square garden has an area of 4916.8 square feet. How long is one side?",
            {"x": 4916.8},
        ),
        ToolExample(
            "The variance of the weather data is 4754. What is the standard deviation?",
            {"x": 4754},
        ),
        ToolExample("sqrt(2)?", {"x": 2}),
        ToolExample("Compute the square root of 0.0284.", {"x": 0.0284}),
        ToolExample("What number multiplied by itself gives 1600?", {"x": 1600}),
        ToolExample("Take the root of 2.25.", {"x": 2.25}),
        ToolExample("How long is the side of a square of area 789789?", {"x": 789789}),
    ]

    def run(self, x: float) -> int | float:
        value = _exact(x, "x")
        if value < 0:
            raise ValueError(f"cannot take the square root of a negative number ({_show(x)})")
        exact = _exact_root(value, 2)
        if exact is not None:
            return _finish(exact)
        if value < 10**300:
            return _round(math.sqrt(float(value)))
        if value > Fraction(10) ** 600:
            raise ValueError("the result is too large to represent")
        return _round(math.exp(_ln(value) / 2))


class Log(_Pure):
    """Compute the logarithm of a number, in base 10 unless another base is given.

    Args:
        x: the number to take the logarithm of; must be positive.
        base: the base of the logarithm (10 by default); positive and not 1.
    """

    examples = [
        ToolExample("What is log of 1000?", {"x": 1000}),
        ToolExample("Compute log10(123.2).", {"x": 123.2}),
        ToolExample("If 10^x = 8162.85, what is x?", {"x": 8162.85}),
        ToolExample("What is the base-10 logarithm of 0.000325?", {"x": 0.000325}),
        ToolExample("What is log base 2 of 64?", {"x": 64, "base": 2}),
        ToolExample("log(3429) equals?", {"x": 3429}),
        ToolExample(
            "The hydronium concentration is 0.00008342 mol/L. What is the log of that concentration?",
            {"x": 0.00008342},
        ),
        ToolExample("Find the logarithm of 81 to base 3.", {"x": 81, "base": 3}),
        ToolExample("To what power must 5 be raised to get 30?", {"x": 30, "base": 5}),
    ]

    def run(self, x: float, base: float = 10) -> int | float:
        value = _exact(x, "x")
        b = _exact(base, "base")
        if value <= 0:
            raise ValueError(f"the logarithm is only defined for positive numbers, got {_show(x)}")
        if b <= 0 or b == 1:
            raise ValueError(f"the base of a logarithm must be positive and not 1, got {_show(base)}")
        approx = _ln(value) / _ln(b)
        exact = _exact_log(value, b, approx)
        if exact is not None:
            return _finish(exact)
        return _round(approx)


class Ln(_Pure):
    """Compute the natural logarithm (the logarithm to base e) of a number.

    Args:
        x: the number to take the natural logarithm of; must be positive.
    """

    examples = [
        ToolExample("What is ln(5)?", {"x": 5}),
        ToolExample("If e^x = 9934, what is x?", {"x": 9934}),
        ToolExample("What is the value of ln of 8903.25?", {"x": 8903.25}),
        ToolExample("Compute the natural log of 0.5.", {"x": 0.5}),
        ToolExample("Find the natural logarithm of 3788.444.", {"x": 3788.444}),
        ToolExample("What is log base e of 686868?", {"x": 686868}),
        ToolExample(
            "An investment grows continuously to 2.5 times its value. What is the growth exponent, ln of 2.5?",
            {"x": 2.5},
        ),
        ToolExample("Natural log of 1?", {"x": 1}),
        ToolExample("Compute ln(0.0123)", {"x": 0.0123}),
    ]

    def run(self, x: float) -> int | float:
        value = _exact(x, "x")
        if value <= 0:
            raise ValueError(f"the natural logarithm is only defined for positive numbers, got {_show(x)}")
        if value == 1:
            return 0
        return _round(_ln(value))


class Lcm(_Pure):
    """Find the least common multiple of two or more whole numbers.

    Args:
        numbers: the whole numbers, at least two.
    """

    examples = [
        ToolExample("What is the least common multiple of 4 and 6?", {"numbers": [4, 6]}),
        ToolExample("Find the LCM of 23, 33 and 42.", {"numbers": [23, 33, 42]}),
        ToolExample("lcm(783, 684)?", {"numbers": [783, 684]}),
        ToolExample(
            "One bus comes every 12 minutes and another every 18 minutes. They just left together; "
            "in how many minutes will they leave together again?",
            {"numbers": [12, 18]},
        ),
        ToolExample("Smallest number divisible by 38, 49 and 17?", {"numbers": [38, 49, 17]}),
        ToolExample(
            "Three choirs practice every 989, 166 and 786 days. After how many days do they all practice together again?",
            {"numbers": [989, 166, 786]},
        ),
        ToolExample("Compute the lowest common multiple of 289 and 272.", {"numbers": [289, 272]}),
        ToolExample("What's the LCM of 182 and 273?", {"numbers": [182, 273]}),
        ToolExample("Least common multiple of 2, 3, 4, 5 and 6?", {"numbers": [2, 3, 4, 5, 6]}),
    ]

    def run(self, numbers: list[int]) -> int:
        values = _whole_numbers(numbers)
        result = abs(values[0])
        for v in values[1:]:
            result = _check_int_size(math.lcm(result, v))
        return result


class Gcd(_Pure):
    """Find the greatest common divisor (highest common factor) of two or more whole numbers.

    Args:
        numbers: the whole numbers, at least two.
    """

    examples = [
        ToolExample("What is the greatest common divisor of 12 and 18?", {"numbers": [12, 18]}),
        ToolExample("Find the GCD of 259 and 185.", {"numbers": [259, 185]}),
        ToolExample("gcd(144, 126, 112)?", {"numbers": [144, 126, 112]}),
        ToolExample(
            "A farmer has 316 cows and 196 sheep and wants equal pens of each. What is the largest pen size?",
            {"numbers": [316, 196]},
        ),
        ToolExample("What is the highest common factor of 66, 34, 54 and 32?", {"numbers": [66, 34, 54, 32]}),
        ToolExample(
            "I want to cut ribbons of 896 cm, 672 cm and 1456 cm into equal pieces as long as possible. How long is each piece?",
            {"numbers": [896, 672, 1456]},
        ),
        ToolExample("Largest number that divides both 6644 and 7248?", {"numbers": [6644, 7248]}),
        ToolExample("Compute the greatest common factor of 36 and 702.", {"numbers": [36, 702]}),
        ToolExample("Are 997 and 161 coprime? Give their GCD.", {"numbers": [997, 161]}),
    ]

    def run(self, numbers: list[int]) -> int:
        values = _whole_numbers(numbers)
        return math.gcd(*values)


class Remainder(_Pure):
    """Divide one number by another and return the remainder (modulo).

    Args:
        a: the number to be divided (the dividend).
        b: the number to divide by (the divisor); the result is a mod b, with the sign of b.
    """

    examples = [
        ToolExample("What is the remainder when 17 is divided by 5?", {"a": 17, "b": 5}),
        ToolExample("Compute 7893 mod 777.", {"a": 7893, "b": 777}),
        ToolExample(
            "7602 students are split into classes of 3497. How many students are left over?",
            {"a": 7602, "b": 3497},
        ),
        ToolExample("What is 12345 modulo 33?", {"a": 12345, "b": 33}),
        ToolExample(
            "I pack 5572 apples into boxes of 3241. How many apples are left unpacked?",
            {"a": 5572, "b": 3241},
        ),
        ToolExample("Find the remainder of 1899 divided by 24.", {"a": 1899, "b": 24}),
        ToolExample("11241241 % 234 = ?", {"a": 11241241, "b": 234}),
        ToolExample(
            "A 10.5 meter rope is cut into 3 meter pieces. How much rope is left over?",
            {"a": 10.5, "b": 3},
        ),
        ToolExample("What's left after dividing 854 by 123?", {"a": 854, "b": 123}),
    ]

    def run(self, a: float, b: float) -> int | float:
        divisor = _exact(b, "b")
        if divisor == 0:
            raise ValueError("cannot take a remainder after dividing by zero")
        return _finish(_exact(a, "a") % divisor)


def _check_counting_args(n: Any, k: Any) -> tuple[int, int]:
    n_int = _whole(n, "n")
    k_int = _whole(k, "k")
    if n_int < 0 or k_int < 0:
        raise ValueError(f"n and k must not be negative, got n={_show(n)}, k={_show(k)}")
    if n_int > MAX_COMBINATORICS_N:
        raise ValueError(f"n is too large (at most {MAX_COMBINATORICS_N:,}), got {n_int}")
    return n_int, k_int


def _digits_estimate(log_value: float) -> float:
    return log_value / math.log(10)


class Choose(_Pure):
    """Count the ways to choose k items out of n when order does not matter (combinations, n choose k).

    Args:
        n: how many items there are to choose from (a whole number).
        k: how many items are chosen (a whole number).
    """

    examples = [
        ToolExample("How many ways can I choose 2 items from 5?", {"n": 5, "k": 2}),
        ToolExample("What is 45 choose 7?", {"n": 45, "k": 7}),
        ToolExample(
            "A company has 9 employees. How many ways can a team of 7 be chosen?",
            {"n": 9, "k": 7},
        ),
        ToolExample(
            "In a group of 19 friends, how many ways can you select 15 to go on a trip?",
            {"n": 19, "k": 15},
        ),
        ToolExample("Compute the binomial coefficient C(28, 19).", {"n": 28, "k": 19}),
        ToolExample(
            "A school with 17 teachers forms a committee of 9. How many different committees are possible?",
            {"n": 17, "k": 9},
        ),
        ToolExample("How many 5-card hands can be dealt from a 52-card deck?", {"n": 52, "k": 5}),
        ToolExample("In how many ways can 3 toppings be picked from 197?", {"n": 197, "k": 3}),
        ToolExample("Number of combinations of 101 things taken 5 at a time?", {"n": 101, "k": 5}),
    ]

    def run(self, n: int, k: int) -> int:
        n_int, k_int = _check_counting_args(n, k)
        if k_int > n_int:
            return 0
        log_result = math.lgamma(n_int + 1) - math.lgamma(k_int + 1) - math.lgamma(n_int - k_int + 1)
        if _digits_estimate(log_result) > MAX_RESULT_DIGITS:
            raise ValueError(f"the result is too large (more than {MAX_RESULT_DIGITS} digits)")
        return math.comb(n_int, k_int)


class Permutate(_Pure):
    """Count the ordered arrangements of k items taken from n (permutations, where order matters).

    Args:
        n: how many items there are to pick from (a whole number).
        k: how many items are arranged in order (a whole number).
    """

    examples = [
        ToolExample("How many ways can 3 of 5 runners finish first, second and third?", {"n": 5, "k": 3}),
        ToolExample("What is P(23, 7)?", {"n": 23, "k": 7}),
        ToolExample(
            "A team of 11 athletes runs a race. How many possible orders are there for the top 6 finishers?",
            {"n": 11, "k": 6},
        ),
        ToolExample("In how many orders can 7 books be arranged on a shelf?", {"n": 7, "k": 7}),
        ToolExample("Compute the number of permutations of 17 items taken 8 at a time.", {"n": 17, "k": 8}),
        ToolExample(
            "4 employees are assigned to 2 different offices, one each. In how many ways can this be done?",
            {"n": 4, "k": 2},
        ),
        ToolExample("How many 4-letter codes with distinct letters can be made from 76 symbols?", {"n": 76, "k": 4}),
        ToolExample("In how many ways can 14 people stand in a line?", {"n": 14, "k": 14}),
        ToolExample("Arrange 2 of 12 flags in order on a pole: how many arrangements?", {"n": 12, "k": 2}),
    ]

    def run(self, n: int, k: int) -> int:
        n_int, k_int = _check_counting_args(n, k)
        if k_int > n_int:
            return 0
        log_result = math.lgamma(n_int + 1) - math.lgamma(n_int - k_int + 1)
        if _digits_estimate(log_result) > MAX_RESULT_DIGITS:
            raise ValueError(f"the result is too large (more than {MAX_RESULT_DIGITS} digits)")
        return math.perm(n_int, k_int)


#: The 13 FuncQA tools, in FuncQA's order (``func_dict.json``).
TOOLS: list[type[Tool]] = [
    Add,
    Subtract,
    Multiply,
    Divide,
    Power,
    Sqrt,
    Log,
    Ln,
    Lcm,
    Gcd,
    Remainder,
    Choose,
    Permutate,
]
