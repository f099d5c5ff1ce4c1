"""Real browser: headless Debian Chromium (driven by playwright's Python package) opens the frontend the host serves,
loads every UI workflow through the frontend's own loading path (`app.loadGraphData`, what the template browser and
File > Open call), and checks: no missing-node dialog or error toast, the node count and the Quickstep nodes
expected, and that the frontend's own API export (`app.graphToPrompt`) equals our conversion (workflows/convert.py).
It also checks what a user adding nodes sees: every Quickstep node is registered under `quickstep/`, and a node added
to an empty canvas carries its tooltips. Screenshots of each loaded canvas go to ~/.cache/quickstep/artifacts/<pin>/.

Needs `chromium` (installed with apt-get when missing) and playwright (in the project venv, host/venv.py)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from host.locate import cache_root
from workflows.convert import to_api
from workflows.schema import FRONTEND_NODES

ROOT = Path(__file__).resolve().parents[2]
UI_FILES = sorted((ROOT / "example_workflows").glob("*.json"))

pytestmark = pytest.mark.minimum_pin


def chromium() -> str:
    found = shutil.which("chromium")
    if not found:
        proc = subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, text=True)
        found = shutil.which("chromium")
        if not found:
            pytest.fail("the browser test needs Debian's chromium and `apt-get install -y chromium` failed:\n"
                        + proc.stderr[-2000:] + "\nInstall it (as root: apt-get update && apt-get install -y chromium)")
    return found


@pytest.fixture(scope="module")
def page(server, pin):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser test needs playwright in the test venv: python3 -m host test installs it "
                    "(host/venv.py DEV_TOOLS), or pip install playwright")
    exe = chromium()
    # a returning user: no first-run template dialog
    server.post_json("/settings", {"Comfy.TutorialCompleted": True})
    artifacts = cache_root() / "artifacts" / pin
    artifacts.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu",
                                                                "--disable-dev-shm-usage"])
        pg = browser.new_page(viewport={"width": 1600, "height": 1000})
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(server.url, wait_until="load", timeout=120_000)
        pg.wait_for_function("window.app && window.app.graph && window.LiteGraph && "
                             "Object.keys(window.LiteGraph.registered_node_types).length > 100", timeout=120_000)
        errors.clear()  # only what our workflows cause (the minimum pin's frontend logs one at start-up)
        pg.artifacts = artifacts
        pg.errors = errors
        yield pg
        browser.close()


LOAD = """async (wf) => {
  await window.app.loadGraphData(wf, true, true, null);
  await new Promise(r => setTimeout(r, 300));
  const exported = await window.app.graphToPrompt();
  return {types: window.app.graph.nodes.map(n => n.type), output: exported.output};
}"""


def visible_problems(pg, missing_models_expected: bool) -> list[str]:
    """Dialogs (the missing-node one), error toasts, and, unless the workflow's model files cannot be here, the
    current frontend's "N errors found" panel."""
    problems = []
    selectors = [".p-toast-message-error", ".p-dialog"] + ([] if missing_models_expected else ["text=errors found"])
    for sel in selectors:
        loc = pg.locator(sel)
        for k in range(loc.count()):
            if loc.nth(k).is_visible():
                problems.append(f"{sel}: {loc.nth(k).inner_text()[:500]}")
    return problems


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_frontend_loads_the_workflow_and_exports_what_we_convert(server, page, path):
    ui = json.loads(path.read_text())
    got = page.evaluate(LOAD, ui)
    page.wait_for_timeout(200)
    page.screenshot(path=str(page.artifacts / f"{path.stem}.png"))
    problems = visible_problems(page, missing_models_expected=not path.stem.startswith("toy_"))
    assert not problems, problems
    assert sorted(got["types"]) == sorted(n["type"] for n in ui["nodes"])
    expected_quickstep = sorted(n["type"] for n in ui["nodes"] if n["type"].startswith("Quickstep"))
    assert sorted(t for t in got["types"] if t.startswith("Quickstep")) == expected_quickstep
    assert got["output"] == to_api(ui, server.object_info())
    assert not page.errors, page.errors


def test_quickstep_nodes_are_in_the_library_under_quickstep_with_tooltips(server, page):
    info = server.object_info()
    ours = sorted(k for k in info if k.startswith("Quickstep") and not k.startswith("QuickstepTest"))
    seen = page.evaluate("""(ours) => {
      window.app.graph.clear();
      const out = {};
      for (const t of ours) {
        const cls = window.LiteGraph.registered_node_types[t];
        if (!cls) { out[t] = null; continue; }
        const node = window.LiteGraph.createNode(t);
        window.app.graph.add(node);
        // the definition the frontend's hover tooltips read (nodeData), and what the added node shows
        const def = cls.nodeData || {};
        const specs = {...(def.input?.required || {}), ...(def.input?.optional || {})};
        const shown = [...(node.inputs || []).map(i => i.name), ...(node.widgets || []).map(w => w.name)]
          .filter(n => n !== 'control_after_generate');
        out[t] = {category: cls.category || def.category, description: def.description || '',
                  untipped: [...new Set(shown)].filter(n => !(specs[n] && specs[n][1] && specs[n][1].tooltip)),
                  shown: shown.length};
      }
      return out;
    }""", ours)
    page.screenshot(path=str(page.artifacts / "all_quickstep_nodes.png"))
    for node_id in ours:
        assert seen[node_id] is not None, f"{node_id} is not registered in the frontend"
        assert seen[node_id]["category"].startswith("quickstep/"), (node_id, seen[node_id]["category"])
        assert seen[node_id]["description"], f"{node_id}: no description in the frontend"
        assert not seen[node_id]["untipped"], f"{node_id}: inputs without a tooltip: {seen[node_id]['untipped']}"
    assert FRONTEND_NODES  # the virtual nodes convert.py skips exist in the frontend too
    assert page.evaluate("(ts) => ts.every(t => !!window.LiteGraph.registered_node_types[t])",
                         sorted(FRONTEND_NODES - {"MarkdownNote"}))
