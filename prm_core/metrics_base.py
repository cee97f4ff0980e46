"""What every metric shares: input checks, and a nan with a warning where a metric is undefined."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined on this input (e.g. only one class) and was returned as nan."""


def _undefined(message: str) -> float:
    warnings.warn(message, UndefinedMetricWarning, stacklevel=3)
    return float("nan")


def _as_array(values: Any, name: str, dtype: Any = np.float64) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        values = (values.double() if values.is_floating_point() else values).numpy()  # bf16 has no numpy
    array = np.asarray(values, dtype=dtype)
    if array.size == 0:
        raise ValueError(f"{name} is empty; pass at least one value.")
    return array


def _check_positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name}={value!r} must be an int >= 1.")


def _as_indices(values: Any, name: str) -> np.ndarray:
    array = _as_array(values, name).ravel()
    if np.isnan(array).any() or (array != np.round(array)).any() or (array < -1).any():
        raise ValueError(f"{name} must hold whole step indices >= 0, or -1 for no error; got {array[:5].tolist()}.")
    return array.astype(np.int64)
