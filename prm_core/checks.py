"""Checks at the public boundary, with one message shape: the field, its value, the rule, the fix.

Every public function and config of ``prm_core`` checks its numbers here, so that a NaN threshold,
a boolean used as an index or a YAML string never turns into a silent wrong number:

* ``bool`` is never a number or an index here (Python's ``True == 1`` is a trap, not a feature);
* NaN never passes a range, and infinity only where the interval closes on it (``"[0, inf]"``);
* a wrong *type* raises ``ArgumentTypeError``, which is both a ``TypeError`` and a ``ValueError``
  (as numpy's ``AxisError`` is both), so ``except ValueError`` catches every bad argument.

Ranges are written as intervals, ``"[0, 1]"``, ``"(0, inf)"``, ``"[1, inf)"``, read once and cached.
``check_fields`` checks every field of a config dataclass against its annotation, so a config
cannot hold a ``str`` where its annotation says ``float`` whatever ``__post_init__`` forgets.
"""

from __future__ import annotations

import functools
import math
import numbers
import types
import typing
from collections.abc import Sequence
from dataclasses import fields, is_dataclass
from typing import Any

SEED_INTERVAL = "[0, 2**63)"  # what torch.manual_seed, random.Random and numpy's default_rng all take


class ArgumentTypeError(TypeError, ValueError):
    """An argument has the wrong type (e.g. ``True`` where a count is meant, ``"3e-3"`` from YAML)."""


@functools.cache
def _interval(text: str) -> tuple[float, float, bool, bool]:
    """``"[0, 1)"`` -> (low, high, low_closed, high_closed); bounds may be ``inf`` or ``2**63``."""
    left, right = text[0], text[-1]
    if left not in "[(" or right not in "])" or text.count(",") != 1:
        raise ValueError(f"interval {text!r} must look like '[0, 1]' or '(0, inf)'.")
    low, high = (_bound(part.strip()) for part in text[1:-1].split(","))
    return low, high, left == "[", right == "]"


def _bound(part: str) -> float:
    sign = -1.0 if part.startswith("-") else 1.0
    body = part.lstrip("-")
    if body == "inf":
        return sign * math.inf
    if body.startswith("2**"):
        return sign * float(2 ** int(body[3:]))
    return sign * float(body)


def _inside(value: float, interval: str) -> bool:
    low, high, low_closed, high_closed = _interval(interval)
    above = value >= low if low_closed else value > low
    below = value <= high if high_closed else value < high
    return above and below  # False for NaN: every comparison with NaN is False


ANY = "(-inf, inf)"


def _within(interval: str) -> str:
    return "" if interval == ANY else f" in {interval}"


def _message(name: str, value: Any, rule: str, fix: str) -> str:
    return f"{name}={value!r} {rule}" + (f"; {fix}" if fix else ".")


def check_int(value: Any, name: str, interval: str = ANY, fix: str = "") -> int:
    """``value`` as an int in ``interval``; refuses bools, floats (even ``3.0``) and strings.

    Raises
    ------
    ArgumentTypeError
        When ``value`` is not an integer (numpy integers are).
    ValueError
        When it lies outside ``interval``.

    Examples
    --------
    >>> check_int(3, "n_bins", "[1, inf)")
    3
    >>> check_int(True, "n_bins", "[1, inf)")
    Traceback (most recent call last):
    ...
    prm_core.checks.ArgumentTypeError: n_bins=True must be an int in [1, inf), not bool.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(_message(name, value, f"must be an int{_within(interval)}, not {type(value).__name__}", fix))
    if not _inside(int(value), interval):
        raise ValueError(_message(name, value, f"must be an int{_within(interval)}", fix))
    return int(value)


def check_real(value: Any, name: str, interval: str = ANY, fix: str = "") -> float:
    """``value`` as a float in ``interval``: a real number (ints too), not a bool, never NaN, and
    infinite only where ``interval`` is closed at that infinity (``"[0, inf]"``).

    Raises
    ------
    ArgumentTypeError
        When ``value`` is not a real number.
    ValueError
        When it is NaN or lies outside ``interval``.

    Examples
    --------
    >>> check_real(0.5, "threshold", "[0, 1]")
    0.5
    >>> check_real(float("nan"), "threshold", "[0, 1]")
    Traceback (most recent call last):
    ...
    ValueError: threshold=nan must be a number in [0, 1].
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if isinstance(value, str) and _is_number_text(value):
            fix = fix or f"write it as a number; in YAML, {value!r} needs a dot to be one (e.g. 3.0e-3, not 3e-3)"
        raise ArgumentTypeError(_message(name, value, f"must be a {'finite ' if interval == ANY else ''}number{_within(interval)}, not {type(value).__name__}",
                                         fix))
    number = float(value)
    if not _inside(number, interval):
        raise ValueError(_message(name, value, f"must be a {'finite ' if interval == ANY else ''}number{_within(interval)}", fix))
    return number


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_probability(value: Any, name: str, fix: str = "") -> float:
    """``check_real`` in ``[0, 1]``."""
    return check_real(value, name, "[0, 1]", fix)


def check_seed(value: Any, name: str = "seed") -> int:
    """A seed every RNG the course uses accepts: an int in ``[0, 2**63)``."""
    return check_int(value, name, SEED_INTERVAL, "pass e.g. seed=0")


def check_bool(value: Any, name: str) -> bool:
    """``value`` as a bool; refuses 0/1, strings such as ``"false"`` and None."""
    if not isinstance(value, bool) and type(value).__name__ != "bool_":  # numpy's bool_ too
        raise ArgumentTypeError(_message(name, value, f"must be True or False, not {type(value).__name__}", ""))
    return bool(value)


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``, else a ``ValueError`` listing them."""
    if isinstance(value, bool) or value not in choices:
        raise ValueError(_message(name, value, f"must be one of {list(choices)}", ""))
    return value


def _check_annotation(value: Any, hint: Any, name: str) -> None:
    """Check ``value`` against a resolved type hint: int, float, bool, str, None, unions, tuples of
    one type, Literal and dataclasses. Anything else (``Any``, mappings) is left to the caller."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(hint) if o is not type(None)]
        if value is None and len(options) < len(typing.get_args(hint)):
            return
        if len(options) == 1:  # "x | None" with a value: the x message is the useful one
            _check_annotation(value, options[0], name)
            return
        for option in options:
            try:
                _check_annotation(value, option, name)
                return
            except (TypeError, ValueError):
                continue
        names = " or ".join(getattr(o, "__name__", str(o)) for o in typing.get_args(hint))
        raise ArgumentTypeError(_message(name, value, f"must be {names}, not {type(value).__name__}", ""))
    if origin is typing.Literal:
        check_choice(value, name, typing.get_args(hint))
    elif origin is tuple:
        args = typing.get_args(hint)
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ArgumentTypeError(_message(name, value, f"must be a sequence, not {type(value).__name__}", ""))
        if len(args) == 2 and args[1] is Ellipsis:
            for i, item in enumerate(value):
                _check_annotation(item, args[0], f"{name}[{i}]")
    elif hint is bool:
        check_bool(value, name)
    elif hint is int:
        check_int(value, name)
    elif hint is float:
        check_real(value, name)  # finite: a config field that may be infinite says so in its own check
    elif hint is str:
        if not isinstance(value, str):
            raise ArgumentTypeError(_message(name, value, f"must be a str, not {type(value).__name__}", ""))
    elif hint is type(None):
        if value is not None:
            raise ArgumentTypeError(_message(name, value, "must be None", ""))
    elif isinstance(hint, type) and is_dataclass(hint) and not isinstance(value, hint):
        raise ArgumentTypeError(_message(name, value, f"must be a {hint.__name__}, not {type(value).__name__}", ""))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_fields(config: Any, prefix: str = "") -> None:
    """Check every field of the dataclass instance ``config`` against its annotation.

    A field annotated ``float`` must be a finite real (an int is fine, a bool or ``"3e-3"`` is not),
    ``int`` an int, ``bool`` a bool, ``str`` a str, ``X | None`` either; ``prefix`` (e.g.
    ``"experiment.prm."``) goes before each field's name in the message. Ranges are the config's
    own ``__post_init__``'s business.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Config:
    ...     learning_rate: float = 3e-3
    >>> check_fields(Config(learning_rate="3e-3"))
    Traceback (most recent call last):
    ...
    prm_core.checks.ArgumentTypeError: learning_rate='3e-3' must be a finite number, not str; write it as a number; in YAML, '3e-3' needs a dot to be one (e.g. 3.0e-3, not 3e-3)
    """
    hints = _hints(type(config))
    for f in fields(config):
        _check_annotation(getattr(config, f.name), hints[f.name], prefix + f.name)
