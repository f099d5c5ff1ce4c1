"""What the frontend makes of a node's `/object_info` entry: its input sockets and its widgets, in the frontend's order.

The frontend (comfyui-frontend-package 1.27 on the minimum pin, 1.48 on the current one) orders inputs by `input_order`
(required, then optional, then any others), makes a widget for every INT, FLOAT, STRING, BOOLEAN and COMBO input that
is not `forceInput`, and a socket for everything else. An INT widget gets a second, unserialised `control_after_generate`
widget after it when its spec asks for one, or, when the spec is silent, when it is named `seed` or `noise_seed`; a
COMBO only when its spec asks. `widgets_values` in a saved workflow holds both, in widget order.
"""

from __future__ import annotations

from dataclasses import dataclass

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
#: node types the frontend itself defines (virtual: never sent to /prompt)
FRONTEND_NODES = {"Note", "MarkdownNote", "PrimitiveNode", "Reroute"}


@dataclass(frozen=True)
class Input:
    name: str
    type: str             # "INT", "COMBO", "MODEL", ...
    options: dict
    optional: bool
    widget: bool
    control: bool         # followed by a control_after_generate widget

    @property
    def default(self):
        if "default" in self.options:
            return self.options["default"]
        if self.type == "COMBO":
            choices = self.options.get("options") or []
            return choices[0] if choices else None
        return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(self.type)


def _input(name: str, spec: list, optional: bool) -> Input:
    kind, opts = spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})
    if isinstance(kind, list):
        kind, opts = "COMBO", {**opts, "options": kind}
    widget = kind in WIDGET_TYPES and not opts.get("forceInput")
    control = False
    if widget and kind == "INT":
        asked = opts.get("control_after_generate")
        control = bool(asked) if asked is not None else name in ("seed", "noise_seed")
    elif widget and kind == "COMBO":
        control = bool(opts.get("control_after_generate"))
    return Input(name, kind, opts, optional, widget, control)


def inputs_of(info: dict) -> list[Input]:
    """Every input of a node in the frontend's order (`input_order` first, then the rest as listed)."""
    spec = info.get("input", {})
    order = info.get("input_order") or {}
    found: list[Input] = []
    seen: set[str] = set()
    for category in ("required", "optional"):
        group = spec.get(category) or {}
        names = [n for n in order.get(category, []) if n in group] + [n for n in group if n not in order.get(category, [])]
        for name in names:
            if name not in seen:
                seen.add(name)
                found.append(_input(name, group[name], category == "optional"))
    return found


def widgets_of(info: dict) -> list[Input]:
    return [i for i in inputs_of(info) if i.widget]


def sockets_of(info: dict) -> list[Input]:
    return [i for i in inputs_of(info) if not i.widget]


def title_of(class_type: str, info: dict) -> str:
    """The title a new node gets: its display name, else its id."""
    return info.get("display_name") or class_type
