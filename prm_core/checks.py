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

import difflib
import functools
import math
import numbers
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import fields, is_dataclass, replace
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


def _kind(interval: str) -> str:
    low, high, low_closed, high_closed = _interval(interval)
    allows_inf = (low == -math.inf and low_closed) or (high == math.inf and high_closed)
    return "number" if allows_inf else "finite number"


def _message(name: str, value: Any, rule: str, fix: str) -> str:
    fix = fix if not fix or fix.endswith((".", "?", ")")) else fix + "."
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
    ValueError: threshold=nan must be a finite number in [0, 1].
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if isinstance(value, str) and _is_number_text(value):
            fix = f"write it as a number (in YAML, {value} without a dot is read as text: write 3.0e-3, not 3e-3)"
        raise ArgumentTypeError(_message(name, value, f"must be a {_kind(interval)}{_within(interval)}, not {type(value).__name__}",
                                         fix))
    number = float(value)
    if not _inside(number, interval):
        raise ValueError(_message(name, value, f"must be a {_kind(interval)}{_within(interval)}", fix))
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


def _is_numpy_bool(value: Any) -> bool:
    """numpy's bool scalar: ``bool_`` in numpy 1, ``bool`` (with ``bool_`` an alias) in numpy 2."""
    kind = type(value)
    return kind.__module__ == "numpy" and kind.__name__ in ("bool_", "bool")


def check_bool(value: Any, name: str) -> bool:
    """``value`` as a bool; refuses 0/1, strings such as ``"false"`` and None."""
    if not isinstance(value, bool) and not _is_numpy_bool(value):
        raise ArgumentTypeError(_message(name, value, f"must be True or False, not {type(value).__name__}", ""))
    return bool(value)


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``, else a ``ValueError`` listing them."""
    if isinstance(value, bool) or value not in choices:
        raise ValueError(_message(name, value, f"must be one of {list(choices)}", ""))
    return value


_NO_BAD = object()  # "every element is a real number": None is a legal element


def _is_bool(item: Any) -> bool:
    return isinstance(item, bool) or "bool" in str(getattr(item, "dtype", ""))  # numpy's bool_, torch's bool


def _first_non_real(values: Any, allow_bool: bool) -> Any:
    """The first element of a (nested) list, tuple or object array that is not a real number or None,
    else ``_NO_BAD``: numpy would read a bool as 1.0 or 0.0 and parse ``"0.5"`` as a number, silently."""
    for item in values:
        if isinstance(item, list | tuple) or getattr(item, "ndim", 0) > 0:
            found = _first_non_real(item, allow_bool)
            if found is not _NO_BAD:
                return found
        elif item is None:
            continue
        elif _is_bool(item):
            if not allow_bool:
                return item
        elif not isinstance(item, numbers.Real) and not hasattr(item, "__float__"):  # str has no __float__
            return item
    return _NO_BAD


def check_real_array(values: Any, name: str, *, allow_nan: bool = False, allow_inf: bool = False,
                     allow_bool: bool = False, fix: str = "") -> Any:
    """``values`` (a list, numpy array or torch tensor, any shape) as a float64 numpy array of reals.

    A bool array is not a score or a count (``True`` would read as 1.0) unless ``allow_bool``, and
    text never is (numpy would parse ``"0.5"``); None becomes NaN; NaN and infinity raise unless
    allowed, naming the first positions that hold one. bf16 and fp16 inputs are widened exactly, so
    what is computed from the result runs in float64 whatever the input's precision.

    Raises
    ------
    ArgumentTypeError
        When ``values`` holds a bool (unless allowed), text or anything else that is not a real number.
    ValueError
        When it holds NaN or infinity where they are not allowed.

    Examples
    --------
    >>> check_real_array([0.5, 1], "scores").tolist()
    [0.5, 1.0]
    >>> check_real_array([0.5, float("nan")], "scores")
    Traceback (most recent call last):
    ...
    ValueError: scores holds [nan] at positions [[1]]; NaN is not allowed here: pass finite numbers.
    """
    import numpy as np  # here, not at the top: the scalar checks stay free of numpy

    if type(values).__module__.startswith("torch") and hasattr(values, "detach"):
        tensor = values.detach().cpu()
        values = (tensor.double() if tensor.is_floating_point() else tensor).numpy()  # bf16 has no numpy view
    if isinstance(values, np.ndarray) and values.dtype.kind != "O":
        kind = values.dtype.kind
        bad = _NO_BAD if kind in "fiu" or (kind == "b" and allow_bool) else values.flat[0] if values.size else values.dtype.type()
    else:
        bad = _first_non_real(values if isinstance(values, list | tuple | np.ndarray) else [values], allow_bool)
    if bad is not _NO_BAD:
        is_bool = _is_bool(bad)
        rule = ("must hold real numbers, not bools (True would count as 1.0)" if is_bool
                else f"must hold real numbers only, not {type(bad).__name__} ({bad!r})")
        hint = fix or ("pass e.g. values.astype(float) if 0/1 numbers are meant" if is_bool else "pass numbers")
        raise ArgumentTypeError(f"{name} {rule}; {hint}.")
    array = np.asarray(values, dtype=np.float64)
    for flag, allowed, label in ((np.isnan(array), allow_nan, "NaN"), (np.isinf(array), allow_inf, "infinity")):
        if not allowed and flag.any():
            where = np.argwhere(flag)[:3].tolist()  # [[i, j], ...]: one index list per position
            raise ValueError(f"{name} holds {array[flag][:3].tolist()} at positions {where}; {label} is not "
                             f"allowed here: {fix or 'pass finite numbers'}.")
    return array


def _check_annotation(value: Any, hint: Any, name: str) -> None:
    """Check ``value`` against a resolved type hint: int, float, bool, str, None, unions, tuples of
    one type, Literal and classes (dataclasses, ``os.PathLike``). Anything else (``Any``, generic
    mappings) is left to the caller."""
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
    elif isinstance(hint, type) and hint is not typing.Any and not isinstance(value, hint):
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
    prm_core.checks.ArgumentTypeError: learning_rate='3e-3' must be a finite number, not str; write it as a number (in YAML, 3e-3 without a dot is read as text: write 3.0e-3, not 3e-3)
    """
    hints = _hints(type(config))
    for f in fields(config):
        _check_annotation(getattr(config, f.name), hints[f.name], prefix + f.name)


def config_from_mapping(cls: type, values: Any, section: str, base: Any = None) -> Any:
    """A config dataclass from a mapping (a section of a params YAML file), every error naming the section.

    Keys that are not fields are refused with the known ones (and the closest match); a field that
    holds a config dataclass takes a mapping of its own, read the same way (``experiment.prm``); a
    list becomes a tuple where the field is one. ``base`` (default ``cls()``) supplies what the
    mapping leaves out.

    Raises
    ------
    ValueError
        Naming the section and key, e.g. ``experiment.prm: unknown setting 'max_step' (did you mean
        'max_steps'?)``; ``ArgumentTypeError`` for a section that is not a mapping or a value of the
        wrong type.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Steps:
    ...     max_steps: int = 600
    >>> config_from_mapping(Steps, {"max_steps": 5}, "prm")
    Steps(max_steps=5)
    >>> config_from_mapping(Steps, {"max_step": 5}, "prm")
    Traceback (most recent call last):
    ...
    ValueError: prm: unknown setting 'max_step' (did you mean 'max_steps'?); the known ones are ['max_steps'].
    """
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ArgumentTypeError(f"{section}={values!r} must be a mapping of settings (e.g. {{max_steps: 600}}), "
                                f"not {type(values).__name__}.")
    base = cls() if base is None else base
    known = [f.name for f in fields(cls)]
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{section}: unknown setting {key!r}{hint}; the known ones are {sorted(known)}.")
    hints = _hints(cls)
    overrides = {}
    for key, value in values.items():
        current = getattr(base, key)
        if is_dataclass(current) and not isinstance(value, type(current)):
            overrides[key] = config_from_mapping(type(current), value, f"{section}.{key}", current)
        elif typing.get_origin(hints[key]) is tuple and isinstance(value, list):
            overrides[key] = tuple(value)
        else:
            overrides[key] = value
    try:
        return replace(base, **overrides)
    except ArgumentTypeError as err:
        raise ArgumentTypeError(f"{section}: {err}") from err
    except (TypeError, ValueError) as err:  # __post_init__'s range checks (and replace's own TypeError)
        raise ValueError(f"{section}: {err}") from err
