"""Config dataclasses checked field by field, and built from params sections with errors that say where.

``check_fields`` checks every field of a config against its annotation (with ``prm_core.checks``),
so a config cannot hold a ``str`` where its annotation says ``float``, whatever its own
``__post_init__`` forgets, and stores numpy scalars as Python numbers so that ``json.dumps`` and
cache keys see what a user would have written. ``config_from_mapping`` reads a section of a params
YAML file into a config, naming the section and key of any error.
"""

from __future__ import annotations

import difflib
import functools
import numbers
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import fields, is_dataclass, replace
from typing import Any

from prm_core.checks import (
    ArgumentTypeError,
    bad_value_message,
    check_bool,
    check_choice,
    check_int,
    check_real,
)


def _check_annotation(value: Any, hint: Any, name: str) -> Any:
    """Check ``value`` against a resolved type hint: int, float, bool, str, None, unions, tuples of
    one type, Literal and classes (dataclasses, ``os.PathLike``). Anything else (``Any``, generic
    mappings) is left to the caller.

    Returns ``value`` with numpy scalars made the annotation's Python type (``np.int64(5)`` in an int
    field is ``5``, so ``json.dumps`` and cache keys see a plain number); an int in a float field,
    Python's or numpy's, is a Python int, as ``asdict`` hashed it before."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(hint) if o is not type(None)]
        if value is None and len(options) < len(typing.get_args(hint)):
            return value
        if len(options) == 1:  # "x | None" with a value: the x message is the useful one
            return _check_annotation(value, options[0], name)
        for option in options:
            try:
                return _check_annotation(value, option, name)
            except (TypeError, ValueError):
                continue
        names = " or ".join(getattr(o, "__name__", str(o)) for o in typing.get_args(hint))
        raise ArgumentTypeError(bad_value_message(name, value, f"must be {names}, not {type(value).__name__}", ""))
    if origin is typing.Literal:
        check_choice(value, name, typing.get_args(hint))
    elif origin is tuple:
        args = typing.get_args(hint)
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ArgumentTypeError(bad_value_message(name, value, f"must be a sequence, not {type(value).__name__}", ""))
        if len(args) == 2 and args[1] is Ellipsis:
            items = [_check_annotation(item, args[0], f"{name}[{i}]") for i, item in enumerate(value)]
            if any(new is not old for new, old in zip(items, value, strict=True)):
                return list(items) if isinstance(value, list) else tuple(items)
    elif hint is bool:
        return check_bool(value, name)
    elif hint is int:
        return check_int(value, name)
    elif hint is float:
        number = check_real(value, name)  # finite: a config field that may be infinite says so in its own check
        if type(value) in (int, float):
            return value
        return int(value) if isinstance(value, numbers.Integral) else number  # np.int64(1) hashes as 1, like 1
    elif hint is str:
        if not isinstance(value, str):
            raise ArgumentTypeError(bad_value_message(name, value, f"must be a str, not {type(value).__name__}", ""))
        return str(value)  # numpy's str_ too
    elif hint is type(None):
        if value is not None:
            raise ArgumentTypeError(bad_value_message(name, value, "must be None", ""))
    elif isinstance(hint, type) and hint is not typing.Any and not isinstance(value, hint):
        raise ArgumentTypeError(bad_value_message(name, value, f"must be a {hint.__name__}, not {type(value).__name__}", ""))
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_fields(config: Any, prefix: str = "") -> None:
    """Check every field of the dataclass instance ``config`` against its annotation.

    A field annotated ``float`` must be a finite real (an int is fine, a bool or ``"3e-3"`` is not),
    ``int`` an int, ``bool`` a bool, ``str`` a str, ``X | None`` either; ``prefix`` (e.g.
    ``"experiment.prm."``) goes before each field's name in the message. Ranges are the config's
    own ``__post_init__``'s business.

    A numpy scalar is stored as the annotation's Python type (``np.int64(32)`` as ``32``, also inside
    tuple fields), so the config saves to JSON and hashes as the Python number would; a Python int
    in a float field is kept as it is (cache keys hash ``asdict(config)``).

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
        value = getattr(config, f.name)
        checked = _check_annotation(value, hints[f.name], prefix + f.name)
        if checked is not value:
            object.__setattr__(config, f.name, checked)  # works on frozen dataclasses too


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
