"""resource.Quantity parsing, comparison and kube's canonical formatting."""

from __future__ import annotations

from fractions import Fraction

import pytest

from pocketkube.api.quantity import (
    ERR_FORMAT_WRONG,
    ERR_NUMERIC,
    ERR_SUFFIX,
    Quantity,
    QuantityError,
    canonical_quantity,
    parse_quantity,
    quantity_error,
)


@pytest.mark.parametrize(
    ("text", "value", "canonical"),
    [
        ("100m", Fraction(1, 10), "100m"),
        ("1.5", Fraction(3, 2), "1500m"),
        ("128Mi", 128 * 2**20, "128Mi"),
        ("1G", 10**9, "1G"),
        ("1e3", 1000, "1e3"),
        ("1000", 1000, "1k"),
        ("1500", 1500, "1500"),
        ("0.5Gi", 2**29, "512Mi"),
        ("1.5Gi", 3 * 2**29, "1536Mi"),
        ("512", 512, "512"),
        ("0.0000000001", Fraction(1, 10**9), "1n"),
        ("-2", -2, "-2"),
        ("0", 0, "0"),
        (1, 1, "1"),
        (0.25, Fraction(1, 4), "250m"),
    ],
)
def test_parse_and_format(text: str | int | float, value: Fraction | int, canonical: str) -> None:
    q = parse_quantity(text)
    assert q.value == value
    assert str(q) == canonical


@pytest.mark.parametrize(
    ("text", "message"),
    [("", ERR_FORMAT_WRONG), ("abc", ERR_FORMAT_WRONG), ("1 Gi", ERR_FORMAT_WRONG), ("1K", ERR_SUFFIX),
     ("e3", ERR_NUMERIC), ("1Mi2", ERR_SUFFIX)],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(QuantityError) as exc:
        Quantity.parse(text)
    assert str(exc.value) == message
    assert quantity_error(text) == message


def test_compare() -> None:
    assert parse_quantity("1") == parse_quantity("1000m")
    assert parse_quantity("1Gi") > parse_quantity("1G")
    assert parse_quantity("100m").milli_value() == 100
    assert parse_quantity("1.1").int_value() == 2
    assert canonical_quantity("2000m") == "2"
    assert quantity_error("5Mi") is None
    assert ERR_FORMAT_WRONG == (
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )
