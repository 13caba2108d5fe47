"""Kubernetes resource.Quantity: parse "100m", "1.5", "128Mi", "1e3" exactly, compare, format.

Validation (limits vs requests, quota, LimitRange), the scheduler (fits) and the kubelet all need
the same arithmetic, so it lives here with no dependencies. Values are exact `Fraction`s, rounded
up to the nano like kube does; `str()` gives kube's canonical form ("1.5" -> "1500m",
"1536Mi" stays "1536Mi", "0.5Gi" -> "512Mi").
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction
from math import ceil

FORMAT_DECIMAL_SI = "DecimalSI"
FORMAT_BINARY_SI = "BinarySI"
FORMAT_DECIMAL_EXPONENT = "DecimalExponent"

ERR_FORMAT_WRONG = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
ERR_NUMERIC = "unable to parse numeric part of quantity"
ERR_SUFFIX = "unable to parse quantity's suffix"

_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_BY_EXPONENT = {v: k for k, v in _DECIMAL_SUFFIXES.items()}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_BINARY_BY_EXPONENT = {v: k for k, v in _BINARY_SUFFIXES.items()}
_SUFFIX_CHARS = frozenset("eEinumkKMGTP")
_DIGITS = frozenset("0123456789")
_NANO = Fraction(1, 10**9)
_MAX = Fraction(2**63 - 1)


class QuantityError(ValueError):
    """The text is not a quantity; str() is kube's message."""


def _scan(text: str) -> tuple[bool, str, str]:
    """Split into (positive, numeric part, suffix) the way resource.parseQuantityString does."""
    positive = True
    pos, end = 0, len(text)
    if text[0] in "+-":
        positive = text[0] == "+"
        pos = 1
    start = pos
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    if pos < end and text[pos] == ".":
        pos += 1
        while pos < end and text[pos] in _DIGITS:
            pos += 1
    number = text[start:pos]
    suffix_start = pos
    while pos < end and text[pos] in _SUFFIX_CHARS:
        pos += 1
    if pos < end and text[pos] in "+-":
        pos += 1
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    if pos < end:
        raise QuantityError(ERR_FORMAT_WRONG)
    return positive, number, text[suffix_start:]


def _interpret_suffix(suffix: str) -> tuple[int, int, str]:
    """-> (base, exponent, format)."""
    if suffix in _DECIMAL_SUFFIXES:
        return 10, _DECIMAL_SUFFIXES[suffix], FORMAT_DECIMAL_SI
    if suffix in _BINARY_SUFFIXES:
        return 2, _BINARY_SUFFIXES[suffix], FORMAT_BINARY_SI
    if len(suffix) > 1 and suffix[0] in "eE":
        digits = suffix[1:]
        body = digits[1:] if digits[0] in "+-" else digits
        if body and all(c in _DIGITS for c in body):
            return 10, int(digits), FORMAT_DECIMAL_EXPONENT
    raise QuantityError(ERR_SUFFIX)


def _round_up_nano(value: Fraction) -> Fraction:
    magnitude = abs(value)
    scaled = magnitude / _NANO
    if scaled.denominator != 1:
        magnitude = Fraction(ceil(scaled)) * _NANO
    magnitude = min(magnitude, _MAX)
    return magnitude if value >= 0 else -magnitude


_PARSED: dict[str, Quantity] = {}
_PARSED_MAX = 4096


@functools.total_ordering
@dataclass(frozen=True, slots=True)
class Quantity:
    """An exact amount plus the suffix family it was written in (which formatting keeps)."""

    value: Fraction
    format: str = FORMAT_DECIMAL_SI

    @classmethod
    def parse(cls, text: str | int | float) -> Quantity:
        if type(text) is str and cls is Quantity:
            # Quantities are immutable and the same few texts recur ("100m", "128Mi"): parse once.
            known = _PARSED.get(text)
            if known is None:
                if len(_PARSED) >= _PARSED_MAX:
                    _PARSED.clear()
                known = _PARSED[text] = cls._parse(text)
            return known
        return cls._parse(text)

    @classmethod
    def _parse(cls, text: str | int | float) -> Quantity:
        if isinstance(text, bool):
            raise QuantityError(ERR_FORMAT_WRONG)
        if isinstance(text, int | float):
            text = repr(text)
        if not text:
            raise QuantityError(ERR_FORMAT_WRONG)
        positive, number, suffix = _scan(text)
        base, exponent, fmt = _interpret_suffix(suffix)
        if not number or number == "." or not any(c in _DIGITS for c in number):
            raise QuantityError(ERR_NUMERIC)
        amount = Fraction(number if not number.endswith(".") else number[:-1])
        amount *= Fraction(10) ** exponent if base == 10 else Fraction(2) ** exponent
        if not positive:
            amount = -amount
        amount = _round_up_nano(amount)
        if fmt == FORMAT_BINARY_SI and 0 < amount < 1:
            fmt = FORMAT_DECIMAL_SI
        return cls(amount, fmt)

    def __str__(self) -> str:
        return self.canonical()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Quantity):
            return self.value == other.value
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.value)

    def __lt__(self, other: Quantity) -> bool:
        return self.value < other.value

    def __add__(self, other: Quantity) -> Quantity:
        return Quantity(self.value + other.value, self.format)

    def __sub__(self, other: Quantity) -> Quantity:
        return Quantity(self.value - other.value, self.format)

    def __neg__(self) -> Quantity:
        return Quantity(-self.value, self.format)

    def milli_value(self) -> int:
        """Thousandths, rounded up (resource.Quantity.MilliValue)."""
        return ceil(self.value * 1000)

    def int_value(self) -> int:
        """Whole units, rounded up (resource.Quantity.Value)."""
        return ceil(self.value)

    def canonical(self) -> str:
        """resource.Quantity.String: the shortest exact form in the suffix family it was written in."""
        if self.value == 0:
            return "0"
        sign = "-" if self.value < 0 else ""
        magnitude = abs(self.value)
        fmt = self.format
        if fmt == FORMAT_BINARY_SI and (magnitude < 1024 or magnitude.denominator != 1):
            fmt = FORMAT_DECIMAL_SI
        if fmt == FORMAT_BINARY_SI:
            number, exp = magnitude.numerator, 0
            while number % 1024 == 0 and exp < 60:
                number //= 1024
                exp += 10
            return f"{sign}{number}{_BINARY_BY_EXPONENT.get(exp, '')}"
        mantissa, exp = _decimal_parts(magnitude)
        while mantissa % 10 == 0:
            mantissa //= 10
            exp += 1
        while exp % 3 != 0:
            mantissa *= 10
            exp -= 1
        if fmt == FORMAT_DECIMAL_EXPONENT:
            return f"{sign}{mantissa}" + (f"e{exp}" if exp else "")
        if exp in _DECIMAL_BY_EXPONENT:
            return f"{sign}{mantissa}{_DECIMAL_BY_EXPONENT[exp]}"
        return f"{sign}{mantissa}e{exp}"


def _decimal_parts(value: Fraction) -> tuple[int, int]:
    """value == mantissa * 10**exp exactly (values are multiples of 1e-9 after parsing)."""
    exp = 0
    while value.denominator != 1:
        value *= 10
        exp -= 1
    return value.numerator, exp


def parse_quantity(text: str | int | float) -> Quantity:
    return Quantity.parse(text)


def quantity_error(text: object) -> str | None:
    """kube's parse error message for this value, or None when it is a valid quantity."""
    if not isinstance(text, str | int | float) or isinstance(text, bool):
        return ERR_FORMAT_WRONG
    try:
        Quantity.parse(text)
    except QuantityError as e:
        return str(e)
    return None


def canonical_quantity(text: str | int | float) -> str:
    return Quantity.parse(text).canonical()
