"""UI format -> API format, from the server's `/object_info`, as the frontend's own export (`graphToPrompt`) does it.

- Widget values are read from `widgets_values` in widget order (schema.py), skipping each `control_after_generate`
  value; a dict of values (some extensions save one) is read by name. A list value is sent as `{"__value__": [...]}`.
- A linked input becomes `[origin_id, origin_slot]`, also for a widget converted to an input (the link wins).
- Virtual nodes are never sent: a Reroute passes its input through; a PrimitiveNode's value goes into every widget it
  feeds; Note and MarkdownNote are dropped. Groups only draw boxes.
- A bypassed node (mode 4) is skipped and its consumers are wired to its input of the same slot when the types fit,
  else to its first input of the consumer's type. A muted node (mode 2) is dropped with every input linked to it.
- `_meta.title` is the node's title (its display name when it has none), as the frontend sends it.
"""

from __future__ import annotations

from .schema import CONTROL_VALUES, FRONTEND_NODES, inputs_of, title_of

ALWAYS, NEVER, BYPASS = 0, 2, 4


class ConversionError(ValueError):
    pass


def is_ui_format(workflow: dict) -> bool:
    return isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list) and "links" in workflow


def _valid(kind_in: str, kind_out: str) -> bool:
    """LiteGraph.isValidConnection: equal, a wildcard, or sharing one of comma-separated types."""
    if not kind_in or not kind_out or "*" in (kind_in, kind_out) or kind_in == kind_out:
        return True
    return bool(set(str(kind_in).split(",")) & set(str(kind_out).split(",")))


def widget_values(node: dict, info: dict) -> dict:
    """Widget name -> value for a saved node."""
    widgets = [i for i in inputs_of(info) if i.widget]
    saved = node.get("widgets_values")
    if isinstance(saved, dict):
        return {w.name: saved.get(w.name, w.default) for w in widgets}
    saved = list(saved or [])
    values, k = {}, 0
    for w in widgets:
        values[w.name] = saved[k] if k < len(saved) else w.default
        k += 1
        if w.control and k < len(saved) and saved[k] in CONTROL_VALUES:
            k += 1
    return values


def to_api(workflow: dict, object_info: dict) -> dict:
    """The API-format prompt for a UI-format `workflow`; raises ConversionError naming a node the server lacks."""
    if not is_ui_format(workflow):
        raise ConversionError("not a UI-format workflow (expected 'nodes' and 'links', as the frontend saves)")
    if workflow.get("definitions", {}).get("subgraphs"):
        raise ConversionError("subgraphs are not supported; unpack them in the frontend (right-click > Unpack)")
    nodes = {n["id"]: n for n in workflow["nodes"]}
    links = {}
    for link in workflow["links"]:
        if isinstance(link, dict):
            links[link["id"]] = (link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"],
                                 link.get("type"))
        else:
            links[link[0]] = tuple(link[1:6])
    missing = sorted({f"{n['type']} (node {n['id']})" for n in nodes.values()
                      if n["type"] not in FRONTEND_NODES and n["type"] not in object_info
                      and n.get("mode", ALWAYS) not in (NEVER, BYPASS)})
    if missing:
        raise ConversionError(f"the server has no node type {', '.join(missing)}: install the custom nodes that "
                              "provide it, or remove the node")

    def resolve_output(node_id, slot: int, kind: str, seen: frozenset):
        """(origin_id, slot) an input really reads, ("value", v) for a Primitive's value, or None."""
        if (node_id, slot) in seen:
            raise ConversionError(f"a loop of links through node {node_id}")
        seen = seen | {(node_id, slot)}
        node = nodes.get(node_id)
        if node is None:
            raise ConversionError(f"a link comes from node {node_id}, which is not in the workflow")
        if node.get("mode", ALWAYS) == BYPASS:
            ins = node.get("inputs") or []
            out_kind = (node.get("outputs") or [{}])[slot].get("type", "*") if slot < len(node.get("outputs") or []) else "*"
            if kind in ("*", ""):
                index = slot if len(ins) > slot else 0
            elif slot < len(ins) and _valid(ins[slot]["type"], out_kind) and _valid(ins[slot]["type"], kind):
                index = slot
            else:
                index = next((i for i, x in enumerate(ins) if x["type"] == kind), None)
                if index is None:
                    index = next((i for i, x in enumerate(ins) if _valid(x["type"], out_kind) and
                                  _valid(x["type"], kind)), None)
            if index is None or index >= len(ins):
                return None
            return resolve_input(node, index, kind, seen)
        if node["type"] == "PrimitiveNode":
            values = node.get("widgets_values") or [None]
            return ("value", values[0])
        if node["type"] in FRONTEND_NODES:  # Reroute (and anything virtual with an input at that slot)
            if slot < len(node.get("inputs") or []):
                return resolve_input(node, slot, kind, seen)
            return None
        return (node_id, slot)

    def resolve_input(node: dict, index: int, kind: str | None, seen=frozenset()):
        slot = node["inputs"][index]
        if slot.get("link") is None:
            return None
        link = links.get(slot["link"])
        if link is None:
            raise ConversionError(f"node {node['id']} input {slot['name']} names link {slot['link']}, which is missing")
        return resolve_output(link[0], link[1], kind or slot.get("type", "*"), seen)

    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_NODES or node.get("mode", ALWAYS) in (NEVER, BYPASS):
            continue
        info = object_info[node["type"]]
        inputs = {}
        for name, value in widget_values(node, info).items():
            inputs[name] = {"__value__": value} if isinstance(value, list) else value
        for index, slot in enumerate(node.get("inputs") or []):
            found = resolve_input(node, index, None)
            if found is None:
                continue
            if found[0] == "value":
                inputs[slot["name"]] = {"__value__": found[1]} if isinstance(found[1], list) else found[1]
            else:
                inputs[slot["name"]] = [str(found[0]), int(found[1])]
        prompt[str(node["id"])] = {"inputs": inputs, "class_type": node["type"],
                                   "_meta": {"title": node.get("title") or title_of(node["type"], info)}}
    for entry in prompt.values():  # inputs linked to nodes that are not sent (muted) go too
        for name, value in list(entry["inputs"].items()):
            if isinstance(value, list) and len(value) == 2 and value[0] not in prompt:
                del entry["inputs"][name]
    return prompt
