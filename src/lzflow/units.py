"""Quantities with explicit units in configuration files.

Every length, time, field and energy in lzflow's YAML carries its unit, either in the value
(``"688 mm"``, ``"850 us"``, ``"10.821 kV/cm"``) or in the key name (``eLife_us: 850``).
Values are parsed with `pint` and converted to the canonical unit the code works in
(NEST's own units: mm, µs, ns, kV/cm for the gas field, V/cm for the drift field, K, bar, keV,
GeV). A missing or wrong unit is a :class:`UnitError` whose message names the key, the value and
what was expected.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from numbers import Real

from .exceptions import UnitError

__all__ = ["UnitError", "to_canonical", "parse_quantity"]

_NUMBER_FIRST = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?(\s|$|[a-zA-Z*/])")


@lru_cache(maxsize=1)
def _registry():
    import pint

    return pint.UnitRegistry()


def parse_quantity(text: str, key: str):
    """Parse ``"<number> <unit>"`` into a pint Quantity; raise :class:`UnitError` on failure."""
    import pint

    ureg = _registry()
    if not _NUMBER_FIRST.match(text):
        raise UnitError(f"{key}: {text!r} is not a quantity (no number); expected '<number> <unit>', e.g. '688 mm'")
    try:
        quantity = ureg.Quantity(text.strip())
    except (pint.errors.UndefinedUnitError, pint.errors.DefinitionSyntaxError,
            ValueError, TypeError, AttributeError, AssertionError) as err:
        raise UnitError(f"{key}: {text!r} is not a quantity ({err}); expected e.g. '688 mm'") from None
    if not isinstance(quantity, ureg.Quantity) or quantity.dimensionless:  # a bare number in a string
        raise UnitError(f"{key}: {text!r} has no unit; expected '<number> <unit>', e.g. '688 mm'")
    return quantity


def to_canonical(value: object, key: str, unit: str, *, unit_in_key: bool = False) -> float:
    """Convert a config value to a float in ``unit``.

    Parameters
    ----------
    value: a string ``"<number> <unit>"``, or a bare number if ``unit_in_key`` is true.
    key: dotted config key, used in error messages.
    unit: canonical unit (pint syntax), e.g. ``"mm"``, ``"us"``, ``"kV/cm"``.
    unit_in_key: the key name already states the unit (e.g. ``eLife_us``), so a bare number is
        taken to be in ``unit``.
    """
    import pint

    if isinstance(value, bool):
        raise UnitError(f"{key}: {value!r} is not a quantity; expected a value in {unit}, e.g. '1 {unit}'")
    if isinstance(value, Real):
        if unit_in_key:
            return _finite(float(value), value, key, unit)
        raise UnitError(f"{key}: {value!r} has no unit; expected a quantity in {unit}, e.g. '{value} {unit}'")
    if not isinstance(value, str):
        raise UnitError(f"{key}: {value!r} is not a quantity; expected a string like '1 {unit}'")
    quantity = parse_quantity(value, key)
    try:
        return _finite(float(quantity.to(unit).magnitude), value, key, unit)
    except pint.errors.DimensionalityError:
        raise UnitError(
            f"{key}: {value!r} has unit '{quantity.units:~}' of the wrong dimension; expected a quantity "
            f"convertible to {unit}"
        ) from None


def _finite(number: float, value: object, key: str, unit: str) -> float:
    if not math.isfinite(number):
        raise UnitError(f"{key}: {value!r} is not finite; expected a finite quantity in {unit}")
    return number
