"""What every metric shares: input checks, and a nan with a warning where a metric is undefined."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from prm_core.checks import check_int, check_real_array


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
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu()
            values = (values.double() if values.is_floating_point() else values).numpy()  # bf16 has no numpy
        array = np.asarray(values, dtype=dtype)
    if array.size == 0:
        raise ValueError(f"{name} is empty; pass at least one value.")
    return array


def _check_positive_int(value: Any, name: str) -> int:
    """``value`` as an int >= 1 (``checks.check_int``): never a bool, a float or a string."""
    return check_int(value, name, "[1, inf)")


def _as_indices(values: Any, name: str) -> np.ndarray:
    """``values`` as a 1-D int64 array of step indices >= 0, or -1 for "no error".

    Whole floats (``2.0``) are accepted as the index they name; bools, NaN, infinity and fractions
    raise: ``[False, True]`` is not ``[0, 1]``.
    """
    array = _as_array(values, name, fix="pass int step indices, -1 for no error").ravel()
    bad = ~np.isfinite(array) | (array != np.round(array)) | (array < -1)
    if bad.any():
        raise ValueError(f"{name}={array[:5].tolist()} must hold whole step indices >= 0, or -1 for no error; "
                         f"{name}[{int(np.argmax(bad))}]={float(array[bad][0])!r} is not one.")
    return array.astype(np.int64)
