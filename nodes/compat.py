"""Schema features newer than the minimum supported ComfyUI (v0.3.64) degrade gracefully on older hosts."""

from __future__ import annotations

import dataclasses
import inspect

from comfy_api.latest import io

#: spread into an input to mark it advanced (collapsed in the UI) where the host supports it (v0.8+)
ADVANCED = {"advanced": True} if "advanced" in inspect.signature(io.Float.Input.__init__).parameters else {}
_SCHEMA_FIELDS = {f.name for f in dataclasses.fields(io.Schema)}


def schema(**fields) -> io.Schema:
    """`io.Schema`, dropping fields (such as `search_aliases`) the running host does not know."""
    return io.Schema(**{k: v for k, v in fields.items() if k in _SCHEMA_FIELDS})
