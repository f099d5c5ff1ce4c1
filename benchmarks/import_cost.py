"""What loading Quickstep costs ComfyUI: import + `comfy_entrypoint` + node list, with the host's own modules already
loaded (as they are when ComfyUI reaches custom_nodes/). Median of fresh processes.

    ~/.cache/quickstep/venv/bin/python benchmarks/import_cost.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = """
import asyncio, importlib.util, sys, time
sys.path[:0] = [{root!r}, {tests!r}]
import harness
harness.setup_inprocess_host("current")
import comfy.samplers, comfy.sd, comfy_api.latest, folder_paths, latent_preview, nodes  # loaded before any pack
before = set(sys.modules)
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("quickstep_probe", {init!r}, submodule_search_locations=[{root!r}])
pack = importlib.util.module_from_spec(spec)
sys.modules["quickstep_probe"] = pack
spec.loader.exec_module(pack)
node_list = asyncio.run(asyncio.run(pack.comfy_entrypoint()).get_node_list())
elapsed = time.perf_counter() - start
new = sorted(m.split(".")[0] for m in set(sys.modules) - before if not m.startswith("quickstep_probe"))
print(elapsed, len(node_list), ",".join(sorted(set(new))) or "none")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    code = PROBE.format(root=str(ROOT), tests=str(ROOT / "tests"), init=str(ROOT / "__init__.py"))
    times, nodes, new = [], 0, ""
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        seconds, nodes, new = out.stdout.strip().splitlines()[-1].split(" ", 2)
        times.append(float(seconds))
    print(f"pack load (import + entrypoint + node list), {nodes} nodes: median {statistics.median(times) * 1e3:.0f} ms "
          f"(min {min(times) * 1e3:.0f}, max {max(times) * 1e3:.0f}) over {args.runs} fresh processes; "
          f"top-level modules it imported that the host had not: {new}")


if __name__ == "__main__":
    main()
