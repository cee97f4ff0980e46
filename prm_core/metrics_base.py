"""What every metric shares: input checks, and a nan with a warning where a metric is undefined."""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np

from prm_core.checks import check_int, check_real_array, tensor_to_numpy


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined on this input (e.g. only one class) and was returned as nan."""


def _undefined(message: str) -> float:
    warnings.warn(message, UndefinedMetricWarning, stacklevel=3)
    return float("nan")


def _as_array(values: Any, name: str, dtype: Any = np.float64, *, allow_bool: bool = False,
              fix: str = "") -> np.ndarray:
    """``values`` as a non-empty numpy array; with the default float dtype, a float64 array of real
    numbers (``checks.check_real_array``: NaN and infinity allowed, the metric decides; no bools
    unless ``allow_bool``, e.g. for labels, where True means correct). bf16 and fp16 tensors are
    widened to float64, so every metric runs in float64 whatever the scores' precision."""
    if dtype is np.float64:
        array = check_real_array(values, name, allow_nan=True, allow_inf=True, allow_bool=allow_bool, fix=fix)
    else:
        array = np.asarray(tensor_to_numpy(values), dtype=dtype)
    if array.size == 0:
        raise ValueError(f"{name} is empty; pass at least one value.")
    return array


def _check_positive_int(value: Any, name: str) -> int:
    """``value`` as an int >= 1 (``checks.check_int``): never a bool, a float or a string."""
    return check_int(value, name, "[1, inf)")


def _as_indices(values: Any, name: str) -> np.ndarray:
    """``values`` as a 1-D int64 array of step indices >= 0, or -1 for "no error".

    Integers stay integers (float64 cannot tell 2**62 from 2**62 + 1) and raise beyond int64; whole
    floats (``2.0``) are accepted as the index they name; bools, NaN, infinity and fractions raise:
    ``[False, True]`` is not ``[0, 1]``. A 2-D input raises too (one index per solution).
    """
    raw = tensor_to_numpy(values)
    ints = _integer_array(raw, name)
    array = ints if ints is not None else _as_array(raw, name, fix="pass int step indices, -1 for no error")
    if array.ndim != 1:
        raise ValueError(f"{name} has shape {array.shape}; pass one step index per solution (1-D), -1 for no error.")
    if array.size == 0:
        raise ValueError(f"{name} is empty; pass at least one value.")
    if ints is None:  # floats: whole, finite and within int64, or astype would wrap them silently
        bad = ~np.isfinite(array) | (array != np.round(array)) | (array < -1) | (array >= 2.0**63)
    else:
        bad = array < -1
    if bad.any():
        raise ValueError(f"{name}={array[:5].tolist()} must hold whole step indices >= 0, or -1 for no error; "
                         f"{name}[{int(np.argmax(bad))}]={array[bad][0].item()!r} is not one.")
    return array.astype(np.int64)


def _integer_array(values: Any, name: str) -> np.ndarray | None:
    """An int numpy array, or a flat list or tuple of ints (not bools), as int64; None for anything
    else. Raises for a value beyond int64."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "iu":
            return None
        items = values.ravel().tolist() if values.dtype.kind == "u" else []  # uint64 may exceed int64
    elif isinstance(values, list | tuple) and values and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        items = [int(v) for v in values]
    else:
        return None
    beyond = [v for v in items if not -(2**63) <= v < 2**63]
    if beyond:
        raise ValueError(f"{name} holds {beyond[0]}, beyond int64; pass step indices >= 0, or -1 for no error.")
    return np.asarray(values if isinstance(values, np.ndarray) else items, dtype=np.int64)
