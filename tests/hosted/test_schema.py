"""Every node looks native (ids, categories, descriptions, tooltips) and keeps its inputs and outputs across releases.

The snapshot in tests/schema_snapshot.json records each node's inputs (type, required) and outputs. Removing,
renaming or retyping any of them breaks saved workflows, so it fails here; new nodes and new optional inputs are
fine but must be recorded: `pytest tests/hosted/test_schema.py --update-schema-snapshot`.
"""

import asyncio
import json
from pathlib import Path

import pytest

import quickstep
from quickstep.nodes import NODES

SNAPSHOT = Path(__file__).resolve().parent.parent / "schema_snapshot.json"


def node_infos() -> dict[str, dict]:
    return {cls.GET_SCHEMA().node_id: cls.GET_NODE_INFO_V1() for cls in NODES}


def shape(info: dict) -> dict:
    inputs = {}
    for section in ("required", "optional"):
        for name, spec in info["input"].get(section, {}).items():
            io_type = spec[0] if isinstance(spec[0], str) else "COMBO"
            inputs[name] = {"type": io_type, "required": section == "required"}
    return {"inputs": inputs, "outputs": list(info["output"])}


@pytest.mark.minimum_pin
def test_entrypoint_lists_every_node_once():
    extension = asyncio.run(quickstep.comfy_entrypoint())
    nodes = asyncio.run(extension.get_node_list())
    ids = [cls.GET_SCHEMA().node_id for cls in nodes]
    assert ids and len(ids) == len(set(ids))
    assert set(ids) == set(node_infos())


@pytest.mark.minimum_pin
@pytest.mark.parametrize("cls", NODES, ids=lambda c: c.__name__)
def test_node_is_native(cls):
    schema = cls.GET_SCHEMA()
    info = cls.GET_NODE_INFO_V1()
    assert schema.node_id.startswith("Quickstep")
    assert schema.category.startswith("quickstep/")
    assert len(schema.description) > 40
    assert schema.display_name and "Quickstep" not in schema.display_name
    for section in ("required", "optional"):
        for name, spec in info["input"].get(section, {}).items():
            assert spec[1].get("tooltip"), f"{schema.node_id}.{name} has no tooltip"
    tooltips = info.get("output_tooltips") or []
    assert len(tooltips) == len(info["output"]) and all(tooltips), f"{schema.node_id} outputs need tooltips"


def test_schema_compatible_with_snapshot():
    snapshot = json.loads(SNAPSHOT.read_text())
    current = {node_id: shape(info) for node_id, info in node_infos().items()}
    problems = []
    for node_id, old in snapshot.items():
        new = current.get(node_id)
        if new is None:
            problems.append(f"{node_id} was removed")
            continue
        for name, spec in old["inputs"].items():
            if name not in new["inputs"]:
                problems.append(f"{node_id}: input {name} was removed or renamed")
            elif new["inputs"][name]["type"] != spec["type"]:
                problems.append(f"{node_id}: input {name} changed type {spec['type']} -> {new['inputs'][name]['type']}")
        for name, spec in new["inputs"].items():
            if name not in old["inputs"] and spec["required"]:
                problems.append(f"{node_id}: new input {name} must be optional (old workflows lack it)")
        if new["outputs"][:len(old["outputs"])] != old["outputs"]:
            problems.append(f"{node_id}: outputs changed {old['outputs']} -> {new['outputs']}")
    assert not problems, "breaking schema changes:\n" + "\n".join(problems)


def test_snapshot_records_every_node_and_input(request):
    current = {node_id: shape(info) for node_id, info in sorted(node_infos().items())}
    if request.config.getoption("--update-schema-snapshot"):
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    assert json.loads(SNAPSHOT.read_text()) == current, (
        "tests/schema_snapshot.json is out of date; if the change is compatible, rewrite it with "
        "`pytest tests/hosted/test_schema.py --update-schema-snapshot` and commit it")
