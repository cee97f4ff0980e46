"""Checks at the public boundary, with one message shape: the field, its value, the rule, the fix.

Every public function and config of ``prm_core`` checks its numbers here, so that a NaN threshold,
a boolean used as an index or a YAML string never turns into a silent wrong number:

* ``bool`` is never a number or an index here (Python's ``True == 1`` is a trap, not a feature);
* NaN never passes a range, and infinity only where the interval closes on it (``"[0, inf]"``);
* a numpy scalar, or a 0-d numpy array or torch tensor of a real dtype, is the number it holds;
* a wrong *type* raises ``ArgumentTypeError``, which is both a ``TypeError`` and a ``ValueError``
  (as numpy's ``AxisError`` is both), so ``except ValueError`` catches every bad argument.

Ranges are written as intervals, ``"[0, 1]"``, ``"(0, inf)"``, ``"[1, inf)"``, read once and cached.
Config dataclasses are checked field by field with these in ``prm_core.config_checks``.
"""

from __future__ import annotations

import functools
import math
import numbers
import re
import sys
from collections.abc import Sequence
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


def bad_value_message(name: str, value: Any, rule: str, fix: str) -> str:
    """The one message shape of a refused argument: ``"{name}={value!r} {rule}; {fix}."``.

    Examples
    --------
    >>> bad_value_message("n_bins", 0, "must be an int in [1, inf)", "pass e.g. n_bins=10")
    'n_bins=0 must be an int in [1, inf); pass e.g. n_bins=10.'
    """
    fix = fix if not fix or fix.endswith((".", "?", ")")) else fix + "."
    return f"{name}={value!r} {rule}" + (f"; {fix}" if fix else ".")


def check_int(value: Any, name: str, interval: str = ANY, fix: str = "") -> int:
    """``value`` as an int in ``interval``; refuses bools, floats (even ``3.0``) and strings.

    A 0-d numpy array or torch tensor of an integer dtype counts as the int it holds
    (``np.array(3)``, ``torch.tensor(3)``).

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
    if type(value) is int and (interval is ANY or _inside(value, interval)):  # the common case, checked first: data generation calls this millions of times
        return value
    value = _zero_d_item(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        whole = _whole_number(value)
        if whole is not None:  # 1000.0, or "1e3" as YAML reads it
            fix = f"write {whole} (an int)" + (f"; {fix}" if fix else "")
        raise ArgumentTypeError(bad_value_message(name, value, f"must be an int{_within(interval)}, not {type(value).__name__}", fix))
    if not _inside(int(value), interval):
        raise ValueError(bad_value_message(name, value, f"must be an int{_within(interval)}", fix))
    return int(value)


def check_real(value: Any, name: str, interval: str = ANY, fix: str = "") -> float:
    """``value`` as a float in ``interval``: a real number (ints too), not a bool, never NaN, and
    infinite only where ``interval`` is closed at that infinity (``"[0, inf]"``). A 0-d numpy array
    or torch tensor of a real dtype counts as the number it holds (``torch.tensor(0.5)``), not of a
    bool one.

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
    if type(value) is float and _inside(value, interval):  # the common case first (NaN fails _inside)
        return value
    value = _zero_d_item(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        exponent_text = _EXPONENT_TEXT.match(value) if isinstance(value, str) else None
        if exponent_text:
            mantissa, exponent = exponent_text.groups()
            fix = (f"write it as a number (in YAML, {value} without a dot is read as text: write "
                   f"{mantissa}.0{exponent}, not {value})")
        elif isinstance(value, str) and _is_number_text(value):
            fix = "pass a number, not text"
        raise ArgumentTypeError(bad_value_message(name, value, f"must be a {_kind(interval)}{_within(interval)}, not {type(value).__name__}",
                                         fix))
    number = float(value)
    if not _inside(number, interval):
        raise ValueError(bad_value_message(name, value, f"must be a {_kind(interval)}{_within(interval)}", fix))
    return number


# What PyYAML (YAML 1.1) reads as text although it means a float: an exponent without a dot, "3e-3".
_EXPONENT_TEXT = re.compile(r"^([+-]?\d+)([eE][+-]?\d+)$")


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _whole_number(value: Any) -> int | None:
    """The int a float or a text names exactly (``1000.0``, ``"1e3"``), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if math.isfinite(number) and number.is_integer() and abs(number) < 2**63 else None


def check_probability(value: Any, name: str, fix: str = "") -> float:
    """``check_real`` in ``[0, 1]``."""
    return check_real(value, name, "[0, 1]", fix)


def check_seed(value: Any, name: str = "seed") -> int:
    """A seed every RNG the course uses accepts: an int in ``[0, 2**63)``."""
    return check_int(value, name, SEED_INTERVAL, f"pass e.g. {name}=0")


def _loaded_numpy_and_torch() -> tuple[Any, Any]:
    """numpy and torch where they are imported, else None: an array or a tensor exists only once its
    module is, so the scalar checks look at dtypes without importing either."""
    return sys.modules.get("numpy"), sys.modules.get("torch")


def _zero_d_item(value: Any) -> Any:
    """The Python number a 0-d numpy array or torch tensor of an integer or float dtype holds
    (``.item()``); anything else (bool and complex dtypes, other shapes, numpy scalars) unchanged."""
    np, torch = _loaded_numpy_and_torch()
    if np is not None and isinstance(value, np.ndarray):
        return value.item() if value.ndim == 0 and value.dtype.kind in "iuf" else value
    if torch is not None and isinstance(value, torch.Tensor):
        is_real = value.dtype != torch.bool and not value.dtype.is_complex
        return value.item() if value.ndim == 0 and is_real else value
    return value


def _is_numpy_bool(value: Any) -> bool:
    """numpy's bool scalar (``np.bool_``, which numpy 2 also calls ``np.bool``)."""
    np, _ = _loaded_numpy_and_torch()
    return np is not None and isinstance(value, np.bool_)


def check_bool(value: Any, name: str, fix: str = "") -> bool:
    """``value`` as a bool (numpy's bool too); refuses 0/1, strings such as ``"false"``, NaN and None."""
    if not isinstance(value, bool) and not _is_numpy_bool(value):
        raise ArgumentTypeError(bad_value_message(name, value, f"must be True or False, not {type(value).__name__}", fix))
    return bool(value)


# Words YAML 1.1 (PyYAML) reads as booleans when unquoted: ``mixed_precision: no`` is False.
_YAML_BOOL_WORDS = {"no": False, "off": False, "false": False, "yes": True, "on": True, "true": True}


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``, else a ``ValueError`` listing them.

    A bool where a choice is a word YAML reads as a boolean (``no``, ``on``, ...) gets the fix of
    quoting it.

    Examples
    --------
    >>> check_choice(False, "mixed_precision", ["auto", "no", "bf16"])
    Traceback (most recent call last):
    ...
    ValueError: mixed_precision=False must be one of ['auto', 'no', 'bf16']; quote it in YAML ('no'): unquoted, YAML reads no/yes/on/off as booleans.
    """
    if isinstance(value, bool) or value not in choices:
        fix = ""
        if isinstance(value, bool):
            words = [c for c in choices if isinstance(c, str) and c.lower() in _YAML_BOOL_WORDS]
            meant = [c for c in words if _YAML_BOOL_WORDS[c.lower()] is value] or words
            if meant:
                fix = f"quote it in YAML ({meant[0]!r}): unquoted, YAML reads no/yes/on/off as booleans"
        raise ValueError(bad_value_message(name, value, f"must be one of {list(choices)}", fix))
    return value


_NO_BAD = object()  # "every element is a real number": None is a legal element


def _is_bool(item: Any) -> bool:
    """A Python bool, or a numpy scalar or array of dtype bool, or a torch tensor of dtype bool."""
    if isinstance(item, bool):
        return True
    np, torch = _loaded_numpy_and_torch()
    if np is not None and isinstance(item, np.generic | np.ndarray):
        return item.dtype == np.bool_
    return torch is not None and isinstance(item, torch.Tensor) and item.dtype == torch.bool


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


def tensor_to_numpy(values: Any) -> Any:
    """A torch tensor as a numpy array, floats widened exactly to float64 (bf16 has no numpy view, and
    what is computed from it then runs in float64); anything else unchanged."""
    if type(values).__module__.startswith("torch") and hasattr(values, "detach"):
        tensor = values.detach().cpu()
        return (tensor.double() if tensor.is_floating_point() else tensor).numpy()
    return values


def _untensor(values: Any) -> Any:
    """A (nested) list or tuple with each torch tensor in it as a numpy array (``tensor_to_numpy``):
    numpy cannot read a bf16 tensor, not even a 0-d one, as an element of a list."""
    if isinstance(values, list | tuple):
        return [_untensor(item) for item in values]
    return tensor_to_numpy(values)


def check_real_array(values: Any, name: str, *, allow_nan: bool = False, allow_inf: bool = False,
                     allow_bool: bool = False, fix: str = "") -> Any:
    """``values`` (a list, numpy array or torch tensor, any shape) as a float64 numpy array of reals.

    A bool array is not a score or a count (``True`` would read as 1.0) unless ``allow_bool``, and
    text never is (numpy would parse ``"0.5"``); None becomes NaN; NaN and infinity raise unless
    allowed, naming the first positions that hold one. bf16 and fp16 inputs are widened exactly, so
    what is computed from the result runs in float64 whatever the input's precision; so are the
    tensors in a list (``[torch.tensor(0.2, dtype=torch.bfloat16), ...]``).

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

    values = _untensor(values) if isinstance(values, list | tuple) else tensor_to_numpy(values)
    if isinstance(values, np.ndarray) and values.dtype.kind != "O":
        kind = values.dtype.kind
        if kind in "fiu" or (kind == "b" and allow_bool):
            bad = _NO_BAD
        elif values.size:
            bad = values.flat[0]
        else:  # an empty array of a wrong dtype: its dtype's zero names the type in the message
            bad = values.dtype.type()
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
