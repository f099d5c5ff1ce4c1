"""Widget values checked against the node's own schema, for `validate_inputs` and `execute`.

Why a node needs this: when a node's `validate_inputs` takes an input, ComfyUI skips its own min/max/list checks for
that input, and those checks never catch NaN (every comparison with NaN is false). A value that arrives through a link
(a primitive node) skips validation altogether. So a node that validates an input validates all of it here: right
type, finite, within the schema's min/max, one of the combo's options. The bounds are read from `define_schema`, so
they are written once.

    @classmethod
    def validate_inputs(cls, eta=None, s_noise=None):
        return validation.check(cls, eta=eta, s_noise=s_noise)    # True or the message

    @classmethod
    def execute(cls, eta, s_noise):
        validation.require(cls, eta=eta, s_noise=s_noise)         # ValueError with the same message

In `check` a value of None is skipped: that is how `validate_inputs` receives a linked (not yet computed) or absent
input. In `require` None is refused: `execute` gets None only for a literal null (an absent optional input takes the
signature's default), so give optional widgets their schema default in the `execute` signature.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

from ..folders import shown

EXAMPLES = 8
WIDGETS = ("FLOAT", "INT", "BOOLEAN", "STRING", "COMBO")


def _inputs(cls) -> dict:
    return {inp.id: inp for inp in cls.define_schema().inputs}


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _bounds(inp) -> str:
    low, high = getattr(inp, "min", None), getattr(inp, "max", None)
    if low is not None and high is not None:
        return f" from {_number(low)} to {_number(high)}"
    if low is not None:
        return f" of at least {_number(low)}"
    if high is not None:
        return f" of at most {_number(high)}"
    return ""


def _options_text(options) -> str:
    head = ", ".join(repr(o) for o in options[:EXAMPLES])
    return head + (f", ... ({len(options)} in all)" if len(options) > EXAMPLES else "")


def widget_error(inp, value) -> str | None:
    """The message for a value that does not fit the schema input `inp`, or None when it fits."""
    name, kind = inp.id, inp.get_io_type()
    got = f"{type(value).__name__} {shown(value)}"
    if kind in ("FLOAT", "INT"):
        integer = kind == "INT"
        what = ("an integer" if integer else "a number") + _bounds(inp)
        if isinstance(value, bool) or not isinstance(value, Integral if integer else Real):
            return f"{name} must be {what}; got {got}."
        if not integer and not math.isfinite(value):
            return f"{name} must be a finite number{_bounds(inp)}; got {value}."
        low, high = getattr(inp, "min", None), getattr(inp, "max", None)
        if (low is not None and value < low) or (high is not None and value > high):
            return f"{name} must be {what}; got {_number(value)}."
        return None
    if kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"{name} must be true or false; got {got}."
    if kind == "STRING":
        return None if isinstance(value, str) else f"{name} must be text; got {got}."
    if kind == "COMBO":
        options = list(inp.options or [])
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and value in options:
            return None
        return f"{name} must be one of {_options_text(options)}; got {shown(value)}."
    return None  # a linked type (MODEL, LATENT, ...): checked by the executor and by the node


def first_error(cls, values: dict, executing: bool = False) -> str | None:
    inputs = _inputs(cls)
    for name, value in values.items():
        if name not in inputs:
            raise KeyError(f"{cls.__name__} has no input {name!r}")
        if value is None:
            if executing and inputs[name].get_io_type() in WIDGETS:  # an optional link may be absent
                return f"{name} has no value (null); give it one{_bounds(inputs[name])}."
            continue
        message = widget_error(inputs[name], value)
        if message:
            return message
    return None


def check(cls, **values) -> str | bool:
    """True when every given value fits its input in `cls`'s schema, else the first message (validate_inputs form)."""
    return first_error(cls, values) or True


def require(cls, **values) -> None:
    """Raise ValueError with the message when a value does not fit or is None (for execute, where linked values
    arrive)."""
    message = first_error(cls, values, executing=True)
    if message:
        raise ValueError(message)
