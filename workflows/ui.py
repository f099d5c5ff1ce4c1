"""A small way to describe a workflow (`Flow`), and the UI-format graph it becomes: nodes placed in columns, sizes from
what each node shows, `widgets_values` in the frontend's widget order (see schema.py), links, groups and notes.

Values are given by input name; a widget not named takes its `/object_info` default, so a description lists only what
the workflow means. The frontend saves workflow version 0.4 in this shape (nodes, links as
`[id, origin, origin_slot, target, target_slot, type]`, groups, config, extra, version)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from .schema import inputs_of

COLUMN_WIDTH, GAP, TITLE_H, SLOT_H, WIDGET_H, MULTILINE_H = 380, 40, 30, 22, 24, 90
GROUP_PAD, GROUP_TITLE = 12, 42
NAMESPACE = uuid.UUID("6c1f8f1e-7d0a-4a55-9d2a-9a5e0b1c2d3e")  # stable workflow ids from names


@dataclass(frozen=True)
class Out:
    node: Node
    slot: int


@dataclass(eq=False)
class Node:
    id: int
    type: str
    col: int
    values: dict
    title: str | None = None
    mode: int = 0          # 0 always, 2 never (muted), 4 bypass
    width: int = 340

    def __getitem__(self, slot: int) -> Out:
        return Out(self, slot)


@dataclass
class Group:
    title: str
    members: list[Node]
    color: str


@dataclass
class Flow:
    """One workflow. `name` is its file name; `twin` names the toy workflow whose output is its thumbnail."""
    name: str
    description: str
    twin: str | None = None
    nodes: list[Node] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)

    def add(self, type_: str, *, col: int, id: int | None = None, title: str | None = None, mode: int = 0,
            box_width: int = 340, **values) -> Node:
        node = Node(id or max((n.id for n in self.nodes), default=0) + 1, type_, col, values, title, mode, box_width)
        if any(n.id == node.id for n in self.nodes):
            raise ValueError(f"{self.name}: node id {node.id} used twice")
        self.nodes.append(node)
        return node

    def note(self, text: str, *, col: int, id: int | None = None, title: str = "Note", width: int = 340) -> Node:
        return self.add("Note", col=col, id=id, title=title, box_width=width, text=text)

    def group(self, title: str, *members: Node, color: str = "#3f789e") -> None:
        self.groups.append(Group(title, list(members), color))


# -- UI format ------------------------------------------------------------------------------------------------------
def _widgets(node: Node, info: dict | None) -> list:
    """`widgets_values` for `node`: each widget's value (given or default), a "fixed" control after seeds."""
    if node.type in ("Note", "MarkdownNote"):
        return [node.values["text"]]
    if node.type == "PrimitiveNode":
        return list(node.values["value"]) if isinstance(node.values["value"], tuple) else [node.values["value"]]
    if node.type == "Reroute":
        return []
    values, known = [], set()
    for inp in inputs_of(info):
        known.add(inp.name)
        if not inp.widget:
            continue
        value = node.values.get(inp.name, inp.default)
        values.append(value.node_value if isinstance(value, Linked) else value)
        if inp.control:
            values.append(node.values.get(f"{inp.name}:control", "fixed"))
    unknown = {k for k in node.values if k.split(":")[0] not in known}
    if unknown:
        raise ValueError(f"node {node.id} ({node.type}) has no input(s) {sorted(unknown)}; its inputs are {sorted(known)}")
    return values


@dataclass(frozen=True)
class Linked:
    """A widget converted to an input and linked (to a PrimitiveNode, say): `source` feeds it, `node_value` is what the
    widget itself keeps."""
    source: Out
    node_value: object = None


def _height(node: Node, info: dict | None) -> int:
    if node.type in ("Note", "MarkdownNote"):
        return max(120, 22 * (node.values["text"].count("\n") + 2 + len(node.values["text"]) // 48))
    if info is None:
        return 60
    ins = inputs_of(info)
    sockets = sum(1 for i in ins if not i.widget) + sum(1 for v in node.values.values() if isinstance(v, (Out, Linked)))
    slots = max(sockets, len(info.get("output", [])))
    widgets = sum(1 + i.control for i in ins if i.widget)
    multiline = sum(1 for i in ins if i.widget and i.options.get("multiline"))
    return TITLE_H + slots * SLOT_H + widgets * WIDGET_H + multiline * MULTILINE_H + 16


def _order(flow: Flow) -> dict[int, int]:
    """Execution order (a topological order by id), as the frontend stores in `order`."""
    deps = {n.id: {v.node.id if isinstance(v, Out) else v.source.node.id
                   for v in n.values.values() if isinstance(v, (Out, Linked))} for n in flow.nodes}
    done: list[int] = []
    while len(done) < len(deps):
        ready = sorted(i for i, d in deps.items() if i not in done and d <= set(done))
        if not ready:
            raise ValueError(f"{flow.name}: the graph has a cycle")
        done.append(ready[0])
    return {node_id: k for k, node_id in enumerate(done)}


def to_ui(flow: Flow, object_info: dict) -> dict:
    """The UI-format workflow for `flow`, with widget order and defaults from `object_info`."""
    infos = {}
    for node in flow.nodes:
        if node.type in ("Note", "MarkdownNote", "PrimitiveNode", "Reroute"):
            infos[node.id] = None
        elif node.type not in object_info:
            raise ValueError(f"{flow.name}: node {node.id} is a {node.type}, which this server does not have")
        else:
            infos[node.id] = object_info[node.type]
    links, ui_nodes = [], {}
    order = _order(flow)
    # place: columns left to right, nodes top to bottom in the order given, groups with room for their title
    y_of = {}
    grouped = {m.id: g for g in flow.groups for m in g.members}
    first_in_group = {g.members[0].id for g in flow.groups}
    heights = {n.id: _height(n, infos[n.id]) for n in flow.nodes}
    for node in flow.nodes:
        y = y_of.get(node.col, 0)
        if node.id in first_in_group:
            y += GROUP_TITLE
        ui_nodes[node.id] = {
            "id": node.id, "type": node.type, "pos": [node.col * COLUMN_WIDTH, y], "size": [node.width, heights[node.id]],
            "flags": {}, "order": order[node.id], "mode": node.mode, "inputs": [], "outputs": [],
            "properties": {} if infos[node.id] is None else {"Node name for S&R": node.type},
            "widgets_values": _widgets(node, infos[node.id]),
        }
        if node.title is not None:
            ui_nodes[node.id]["title"] = node.title
        y_of[node.col] = y + heights[node.id] + GAP + (GROUP_PAD if node.id in grouped else 0)
    for node in flow.nodes:
        info = infos[node.id]
        if node.type == "PrimitiveNode":
            ui_nodes[node.id]["outputs"] = [{"name": "connect to widget input", "type": node.values["type"],
                                             "links": []}]
            continue
        if node.type == "Reroute":
            ui_nodes[node.id]["inputs"] = [{"name": "", "type": "*", "link": None}]
            ui_nodes[node.id]["outputs"] = [{"name": "", "type": "*", "links": []}]
            continue
        if info is None:
            continue
        ui_nodes[node.id]["outputs"] = [{"name": name, "type": kind, "links": []}
                                        for name, kind in zip(info.get("output_name") or info["output"], info["output"], strict=True)]
    for node in flow.nodes:
        info = infos[node.id]
        if info is None:
            if node.type == "Reroute":
                _link(links, ui_nodes, node.values["input"], ui_nodes[node.id], 0)
            continue
        sockets = [i for i in inputs_of(info) if not i.widget]
        converted = [i for i in inputs_of(info) if i.widget and isinstance(node.values.get(i.name), (Out, Linked))]
        for inp in sockets + converted:
            slot = {"name": inp.name, "type": inp.type, "link": None}
            if inp.widget:
                slot["widget"] = {"name": inp.name}
            if inp.optional:
                slot["shape"] = 7  # RenderShape.HollowCircle: optional
            ui_nodes[node.id]["inputs"].append(slot)
            value = node.values.get(inp.name)
            source = value.source if isinstance(value, Linked) else value
            if isinstance(source, Out):
                _link(links, ui_nodes, source, ui_nodes[node.id], len(ui_nodes[node.id]["inputs"]) - 1)
            elif not inp.optional and not inp.widget:
                raise ValueError(f"{flow.name}: node {node.id} ({node.type}) input {inp.name} is not linked")
    for node in flow.nodes:  # a Reroute carries its source's type; a Primitive names the first widget it feeds
        if node.type == "Reroute":
            kind = next(link[5] for link in links if link[3] == node.id)
            ui_nodes[node.id]["inputs"][0]["type"] = ui_nodes[node.id]["outputs"][0]["type"] = kind
            for link in links:
                if link[1] == node.id:
                    link[5] = kind
        elif node.type == "PrimitiveNode":
            first = next((link for link in links if link[1] == node.id), None)
            if first:
                target = ui_nodes[first[3]]["inputs"][first[4]]
                ui_nodes[node.id]["outputs"][0]["widget"] = {"name": target["name"]}
    groups = []
    for k, group in enumerate(flow.groups, 1):
        boxes = [(ui_nodes[m.id]["pos"], ui_nodes[m.id]["size"]) for m in group.members]
        x0 = min(p[0] for p, _ in boxes) - GROUP_PAD
        y0 = min(p[1] for p, _ in boxes) - GROUP_TITLE + 4
        x1 = max(p[0] + s[0] for p, s in boxes) + GROUP_PAD
        y1 = max(p[1] + s[1] for p, s in boxes) + GROUP_PAD
        groups.append({"id": k, "title": group.title, "bounding": [x0, y0, x1 - x0, y1 - y0], "color": group.color,
                       "font_size": 24, "flags": {}})
    return {
        "id": str(uuid.uuid5(NAMESPACE, flow.name)), "revision": 0,
        "last_node_id": max(n.id for n in flow.nodes), "last_link_id": len(links),
        "nodes": [ui_nodes[n.id] for n in flow.nodes], "links": links, "groups": groups, "config": {},
        "extra": {"ds": {"scale": 0.75, "offset": [40, 60]}, "quickstep": {"description": flow.description}},
        "version": 0.4,
    }


def _link(links: list, ui_nodes: dict, source: Out, target: dict, target_slot: int) -> None:
    origin = ui_nodes[source.node.id]
    if source.slot >= len(origin["outputs"]):
        raise ValueError(f"node {origin['id']} ({origin['type']}) has no output {source.slot}")
    out = origin["outputs"][source.slot]
    link_id = len(links) + 1
    links.append([link_id, origin["id"], source.slot, target["id"], target_slot, out["type"]])
    out["links"].append(link_id)
    target["inputs"][target_slot]["link"] = link_id
