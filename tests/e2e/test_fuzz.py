"""Fuzzing every Quickstep node through a real server's `POST /prompt`.

The nodes come from `/object_info` (every node of the pack's module, so nodes added later join without editing this
file). For each node a valid graph is built from its schema (links from small providers, widgets at their defaults,
a consumer that makes it run), then one bad value at a time is sent for every input: below min, above max, NaN, inf,
wrong type, null; for combos unlisted values, '', very long names, path traversal and absolute paths; for strings the
same texts (which may be valid); a wrong-type link and each required input missing. A bad value must be rejected
(HTTP 400 or `execution_error`) with a message that names the input and is not a raw exception; a value that may be
valid (strings, listed options, the widget's min and max) must run or be rejected that way. After every case the
server answers, and no file appears outside the output and temp folders. The issue-12 findings have cases of their
own at the end. The case count is printed.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass

import pytest
import reward_tiny as rt
from conftest import start_server

from graphs import Graph
from host.server import PromptRejected

MARKER = f"quickstep_fuzz_{uuid.uuid4().hex[:8]}"
RUN_CAP = 10.0  # seconds a running case may take before it is interrupted (it was accepted, that is what counts)
STOP_WITHIN = 30.0  # seconds an interrupted run may take to stop (Cancel must stop every loop within one iteration)
CLEAR_EXCEPTIONS = {"ValueError", "BadName", "FileNotFoundError"}
RAW_VALIDATION = {"exception_during_validation", "exception_during_inner_validation"}
WIDGETS = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
MAX_OPTIONS = 5  # listed options run per combo
#: words by which a message says what the input takes (ours: "must be ..."; core's: "not in [...]", "max of 8", ...)
EXPECTS = re.compile(r"must|expect|not in|min|max|convert|missing|mismatch|one of|pick|needs|allowed|takes|give|set |use ",
                     re.IGNORECASE)
LONG = "x" * 10_000
REJECT, EITHER, RUN = "reject", "either", "run"
#: folders outside output/ that a node writes to, pending a decision by the lead (the issue asks for output/)
PENDING_WRITES = {
    "models/loras/": "LADD Save writes the student LoRA where LoraLoader lists it; core's SaveLoRA writes to output/",
}
#: inputs whose valid values depend on another input: the companion values that make a valid value runnable
COMPANIONS = {
    ("QuickstepLADDExport", "processes"): lambda n: {"batch_size": n},  # the global batch must divide among them
}
#: known findings in nodes this file does not own, for their owners (each must still occur, so the entry is removed
#: with the fix)
PENDING_CASES = {
}


# -- the schema as /object_info gives it ------------------------------------------------------------------------------
def io_type(spec) -> str:
    return "COMBO" if isinstance(spec[0], list) else spec[0]


def options_of(spec) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def combo_options(spec) -> list:
    return spec[0] if isinstance(spec[0], list) else options_of(spec).get("options", [])


def default_of(spec):
    kind, opts = io_type(spec), options_of(spec)
    if kind == "COMBO":
        options = combo_options(spec)
        return opts.get("default", options[0] if options else None)
    if opts.get("default") is not None:
        return opts["default"]
    return {"INT": opts.get("min", 0), "FLOAT": opts.get("min", 0.0), "STRING": "", "BOOLEAN": False}.get(kind)


def pack_nodes(info: dict) -> list[str]:
    return sorted(k for k, v in info.items() if str(v.get("python_module", "")).split(".")[-1] == "quickstep")


# -- valid graphs -----------------------------------------------------------------------------------------------------
class Builder:
    """One graph: shared small providers for link types, and a consumer that makes the node under test run."""

    def __init__(self, info: dict):
        self.info, self.g, self.made = info, Graph(), {}

    def once(self, key, make):
        if key not in self.made:
            self.made[key] = make()
        return self.made[key]

    def ckpt(self):
        return self.once("ckpt", lambda: self.g.node("QuickstepTestTinyCheckpoint", family="sd1", seed=0))

    def latent(self):
        return self.once("latent", lambda: self.g.node("EmptyLatentImage", width=64, height=64, batch_size=1))

    def image(self):
        return self.once("image", lambda: self.g.node("EmptyImage", width=64, height=64, batch_size=1, color=0x8040C0))

    def cond(self, text="a red circle"):
        return self.once(("cond", text), lambda: self.g.node("CLIPTextEncode", clip=self.ckpt().out(1), text=text))

    def recipes(self) -> dict:
        """How each common link type is made (anything else: `from_info`)."""
        g, ckpt = self.g, self.ckpt
        return {
            "MODEL": lambda: ckpt().out(0), "CLIP": lambda: ckpt().out(1), "VAE": lambda: ckpt().out(2),
            "CONDITIONING": lambda: self.cond().out(0), "LATENT": lambda: self.latent().out(0),
            "IMAGE": lambda: self.image().out(0),
            "SIGMAS": lambda: g.node("BasicScheduler", model=ckpt().out(0), scheduler="simple", steps=2,
                                     denoise=1.0).out(0),
            "SAMPLER": lambda: g.node("KSamplerSelect", sampler_name="euler").out(0),
            "NOISE": lambda: g.node("RandomNoise", noise_seed=0).out(0),
            "GUIDER": lambda: g.node("BasicGuider", model=ckpt().out(0), conditioning=self.cond().out(0)).out(0),
            "REWARD_MODEL": lambda: self.once("toy_reward", lambda: g.node("QuickstepToyReward")).out(0),
            "REWARD": lambda: g.node("QuickstepRewardStack", reward_1=self.provide("REWARD_MODEL"),
                                     weighting="reno").out(0),
            # small, so the nodes that consume it are reached within RUN_CAP (a null combo passes validation as a
            # link would, and only the consumer's execute can refuse it)
            "LADD_DATASET": lambda: self.once("ladd_data", lambda: g.node(
                "QuickstepLADDDataset", model=ckpt().out(0), clip=ckpt().out(1), prompts="a red circle", seed=0,
                images_per_prompt=2, width=64, height=64, steps=2, cfg=2.0, sampler_name="euler", scheduler="normal",
                folder="quickstep/fuzz_ladd_dataset")).out(0),
        }

    def provide(self, io: str, depth: int = 0) -> list:
        recipes = self.recipes()
        for one in io.split(","):  # an input may accept several types ("REWARD,REWARD_MODEL")
            if one in recipes:
                return recipes[one]()
        for one in io.split(","):
            try:
                return self.from_info(one, depth)
            except LookupError:
                continue
        raise LookupError(f"no node provides {io}")

    def from_info(self, io: str, depth: int) -> list:
        """Any node (the pack's first) whose output is `io` and whose own inputs can be provided."""
        if depth > 3:
            raise LookupError(io)
        makers = [k for k, v in self.info.items() if io in v.get("output", [])]
        makers.sort(key=lambda k: (k not in pack_nodes(self.info), k))
        for maker in makers:
            try:
                inputs = self.valid_inputs(maker, depth + 1)
            except LookupError:
                continue
            return self.g.node(maker, **inputs).out(self.info[maker]["output"].index(io))
        raise LookupError(f"no node provides {io}")

    def valid_inputs(self, node_type: str, depth: int = 0) -> dict:
        spec = self.info[node_type]["input"]
        inputs = {}
        for section in ("required", "optional"):
            for name, s in spec.get(section, {}).items():
                if io_type(s) in WIDGETS:
                    value = default_of(s)
                    if value == "" and options_of(s).get("multiline"):
                        value = "a red circle"  # a prompt box: the node may need the text
                    if value is not None:
                        inputs[name] = value
                elif section == "required":
                    inputs[name] = self.provide(io_type(s), depth)
                elif depth == 0 and any(t in self.recipes() for t in io_type(s).split(",")):
                    inputs[name] = self.provide(io_type(s), depth)  # e.g. a negative that cfg != 1 needs
        return inputs

    def consume(self, node, node_type: str) -> None:
        """Attach what makes `node` run: a sampler for SAMPLER/SIGMAS, a decode and preview for LATENT, ..."""
        info = self.info[node_type]
        if info.get("output_node") or not info.get("output"):
            return
        g, ckpt, src = self.g, self.ckpt, node.out(0)
        kind = info["output"][0]
        custom = {"model": ckpt().out(0), "add_noise": True, "noise_seed": 2**64 - 1, "cfg": 1.0,
                  "positive": self.cond().out(0), "negative": self.cond("").out(0), "latent_image": self.latent().out(0)}
        if kind == "SAMPLER":  # three steps, so the Turbo sampler draws fresh noise from the largest seed
            sigmas = g.node("BasicScheduler", model=ckpt().out(0), scheduler="simple", steps=3, denoise=1.0)
            kind, src = "LATENT", g.node("SamplerCustom", sampler=src, sigmas=sigmas.out(0), **custom).out(0)
        elif kind == "SIGMAS":
            sampler = g.node("KSamplerSelect", sampler_name="euler")
            kind, src = "LATENT", g.node("SamplerCustom", sampler=sampler.out(0), sigmas=src, **custom).out(0)
        elif kind == "REWARD_MODEL":
            kind, src = "REWARD", g.node("QuickstepRewardStack", reward_1=src, weighting="reno").out(0)
        if kind == "REWARD":
            g.node("QuickstepScoreImages", images=self.image().out(0), prompt="a red circle", reward=src)
        elif kind == "LATENT":
            g.node("PreviewImage", images=g.node("VAEDecode", samples=src, vae=ckpt().out(2)).out(0))
        elif kind == "IMAGE":
            g.node("PreviewImage", images=src)
        else:
            g.node("PreviewAny", source=src)


def graph_for(info: dict, node_type: str, change: dict | None = None, drop: str | None = None):
    """(API graph, id of the node under test) with `change` applied to its valid inputs and `drop` removed."""
    b = Builder(info)
    inputs = b.valid_inputs(node_type)
    inputs.update(change or {})
    inputs.pop(drop, None)
    node = b.g.node(node_type, **inputs)
    b.consume(node, node_type)
    return b.g.to_api(), node.id


# -- cases ------------------------------------------------------------------------------------------------------------
@dataclass
class Case:
    node_type: str
    input: str
    value: object
    expect: str  # REJECT: must be rejected clearly; EITHER: rejected clearly or runs; RUN: must run
    what: str = ""
    graph: dict | None = None
    node_id: str | None = None
    contains: tuple = ()
    absent: tuple = ()

    def __str__(self):
        return f"{self.node_type}.{self.input} = {self.what or repr(self.value)[:60]} ({self.expect})"


def widget_cases(node_type: str, name: str, spec) -> list[Case]:
    kind, opts = io_type(spec), options_of(spec)
    cases = []

    def add(value, expect, what=""):
        cases.append(Case(node_type, name, value, expect, what))

    wrapped_list = {"__value__": [1, 2]}  # how a list travels as a widget value
    if kind in ("INT", "FLOAT"):
        low, high = opts.get("min"), opts.get("max")
        if low is not None:
            add(low, RUN, f"min {low}")
            add(low - 1 if kind == "INT" else (low / 10 if low > 0 else low - 1), REJECT, "below min")
        if high is not None:
            add(high, RUN, f"max {high}")
            add(high + 1 if kind == "INT" else (high * 2 if high > 0 else high + 1), REJECT, "above max")
        if kind == "FLOAT":
            for value in (math.nan, math.inf, -math.inf):
                add(value, REJECT)
        add("abc", REJECT)
        add(None, REJECT, "null")
        add(wrapped_list, REJECT, "a list")
    elif kind == "COMBO":
        for option in combo_options(spec)[:MAX_OPTIONS]:
            add(option, EITHER, f"option {option!r}")
        for value, what in (("__not_an_option__", ""), ("", "empty"), (None, "null"), (LONG, "10,000 characters"),
                            ("../../" + MARKER, "path traversal"), ("/etc/passwd", "absolute path"),
                            ("円形 ✓ é", "non-ASCII"), (7, "an int"), (wrapped_list, "a list")):
            add(value, REJECT, what)
    elif kind == "STRING":
        # core turns any literal into str (null into 'None', 12345 into '12345'), so these texts cover the types
        for value, what in (("", "empty"), (LONG, "10,000 characters"), ("円形 ✓ é", "non-ASCII"),
                            ("../../" + MARKER, "path traversal"), ("/etc/passwd", "absolute path"),
                            ("nan, inf", "nan, inf"), (None, "null")):
            add(value, EITHER, what)
    elif kind == "BOOLEAN":  # core turns any literal into bool
        for value, what in ((not bool(default_of(spec)), "flipped"), (None, "null")):
            add(value, EITHER, what)
    return cases


def node_cases(info: dict, node_type: str) -> list[Case]:
    cases = []
    spec = info[node_type]["input"]
    for section in ("required", "optional"):
        for name, s in spec.get(section, {}).items():
            kind = io_type(s)
            if kind in WIDGETS:
                cases += widget_cases(node_type, name, s)
            elif kind != "*":
                wrong = "LATENT" if kind == "IMAGE" else "IMAGE"
                cases.append(Case(node_type, name, wrong, REJECT, f"a {wrong} link", contains=("mismatch",)))
            if section == "required":
                cases.append(Case(node_type, name, None, REJECT, "missing", contains=("missing",)))
    return cases


def realise(info: dict, case: Case) -> None:
    if case.graph is not None:
        return
    if case.what == "missing":
        case.graph, case.node_id = graph_for(info, case.node_type, drop=case.input)
    elif case.what.endswith(" link"):
        b = Builder(info)
        inputs = b.valid_inputs(case.node_type)
        inputs[case.input] = b.provide(case.value)
        node = b.g.node(case.node_type, **inputs)
        b.consume(node, case.node_type)
        case.graph, case.node_id = b.g.to_api(), node.id
    else:
        change = {case.input: case.value}
        if case.expect == RUN and (case.node_type, case.input) in COMPANIONS:
            change.update(COMPANIONS[case.node_type, case.input](case.value))
        case.graph, case.node_id = graph_for(info, case.node_type, change)


# -- running them -----------------------------------------------------------------------------------------------------
def submit(server, graph: dict, run_cap: float = RUN_CAP):
    """("rejected", body) for HTTP 400, else (status, RunResult) with status success/error/interrupted, or
    ("timeout", None). A run is interrupted after `run_cap` seconds, or as soon as it starts when run_cap is 0 (for
    nodes whose valid graph is slow: being accepted is what those cases test)."""
    timer = threading.Timer(run_cap, server.interrupt) if run_cap > 0 else None

    def on_message(msg, srv):
        if msg.get("type") == "execution_start":
            if timer is None:
                srv.interrupt()
            else:
                timer.start()

    try:
        result = server.run(graph, timeout=run_cap + STOP_WITHIN, on_message=on_message)
    except PromptRejected as e:
        return "rejected", e.body
    except (TimeoutError, OSError):  # websocket-client's timeout is an OSError
        drain(server)
        return "timeout", None
    finally:
        if timer is not None:
            timer.cancel()
    return result.status, result


def drain(server, wait: float = 300.0) -> None:
    """Interrupt what runs and wait for the queue to empty, so the next case starts on an idle server."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        server.interrupt()
        queue = server.get_json("/queue", timeout=10)
        if not queue.get("queue_running") and not queue.get("queue_pending"):
            return
        time.sleep(1.0)


def errors_of(detail, case) -> list:
    return detail.get("node_errors", {}).get(case.node_id, {}).get("errors", []) if isinstance(detail, dict) else [1]


def error_text(error: dict) -> str:
    """An /prompt error as text. core attaches a node's validate_inputs message to every input it took
    ("x - message"), so for those only the message counts: it must name the input itself."""
    details = str(error.get("details", ""))
    if error.get("type") == "custom_validation_failed" and " - " in details:
        details = details.split(" - ", 1)[1]
    return f"{error.get('message')}: {details}"


def judge(case: Case, outcome: str, detail) -> str | None:
    """None when the outcome is right for the case, else what is wrong."""
    if outcome == "rejected":
        types = [detail.get("error", {}).get("type")]
        for errors in detail.get("node_errors", {}).values():
            types += [e.get("type") for e in errors.get("errors", [])]
        if RAW_VALIDATION & set(types):
            return f"raw exception during validation: {str(detail)[:600]}"
        errors = errors_of(detail, case)
        text = " ".join(error_text(e) for e in errors)
        if not errors:
            return f"rejected, but not for this node: {str(detail)[:600]}"
    elif outcome == "error":
        error = detail.error
        if error.get("node_id") != case.node_id:
            return f"failed in {error.get('node_type')} instead: {error.get('exception_message', '')[:400]}"
        if error.get("exception_type", "").split(".")[-1] not in CLEAR_EXCEPTIONS:
            return f"raw {error.get('exception_type')}: {error.get('exception_message', '')[:400]}"
        text = error.get("exception_message", "")
    elif outcome == "timeout":
        return f"still running {STOP_WITHIN:.0f}s after it was interrupted (a loop that ignores Cancel?)"
    else:  # success or interrupted (it ran)
        return f"accepted a bad value ({outcome})" if case.expect == REJECT else None
    if case.expect == RUN:
        return f"a valid value was rejected: {text[:600]}"
    if case.what != "defaults" and case.input not in text:
        return f"the message does not name {case.input}: {text[:600]}"
    if isinstance(case.value, str) and len(case.value) > 100:
        text = text.replace(case.value, "<the value>")  # core's "Value not in list" echoes it
    if "Traceback" in text or len(text) > 3000 * max(1, len(errors_of(detail, case))):
        return f"the message is a traceback or too long ({len(text)} characters): {text[:300]}"
    if case.expect == REJECT and not EXPECTS.search(text):
        return f"the message does not say what is expected: {text[:600]}"
    for needle in case.contains:
        if needle not in text:
            return f"the message lacks {needle!r}: {text[:600]}"
    for needle in case.absent:
        if needle in text:
            return f"the message shows {needle!r}: {text[:600]}"
    return None


def files_outside(server) -> set[str]:
    """Files under the server's base directory that are not in output/temp/user (or the server's own log), plus
    anything named after this run's traversal marker near it."""
    base = server.base_dir
    allowed = {"output", "temp", "user"}
    found = set()
    for root, dirs, files in os.walk(base):
        rel = os.path.relpath(root, base)
        if rel.split(os.sep)[0] in allowed or rel.startswith("custom_nodes"):
            dirs[:] = []
            continue
        found.update(os.path.join(rel, f) for f in files)
    for near in (base.parent, base.parent.parent, server.host):
        found.update(str(near / n) for n in os.listdir(near) if MARKER in n)
    return found


def run_cases(server, cases, capsys, label: str) -> None:
    info = server.object_info()
    before = files_outside(server)
    problems, outcomes, started, slow, took, pending_cases = [], {}, time.monotonic(), set(), {}, {}
    for case in cases:
        realise(info, case)
        began = time.monotonic()
        outcome, detail = submit(server, case.graph, 0.0 if case.node_type in slow else RUN_CAP)
        took[str(case)] = time.monotonic() - began
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if outcome in ("interrupted", "timeout") and case.what == "defaults":
            slow.add(case.node_type)  # its other cases only need to be accepted and start
        problem = judge(case, outcome, detail)
        if str(case) in PENDING_CASES:
            # a run interrupted before it reached its known problem proves nothing either way
            pending_cases[str(case)] = problem if outcome not in ("interrupted", "timeout") else "not reached"
        elif problem:
            problems.append(f"{case}: {problem}")
        assert server.proc.poll() is None, f"the server died on {case}:\n{server.log_tail()}"
        assert "system" in server.get_json("/system_stats", timeout=10), f"no answer after {case}"
    new_files = files_outside(server) - before
    pending_files = {f for f in new_files if f.startswith(tuple(PENDING_WRITES))}
    summary = (f"\n[fuzz] {label}: {len(cases)} cases in {time.monotonic() - started:.0f}s, outcomes {outcomes}, "
               f"{len(problems)} problems, interrupted as slow: {sorted(slow) or 'none'}; slowest: "
               + ", ".join(f"{k} {v:.1f}s" for k, v in sorted(took.items(), key=lambda kv: -kv[1])[:5])
               + f"; pending writes: {len(pending_files)}, pending cases: {sorted(pending_cases) or 'none'}")
    with capsys.disabled():
        print(summary)  # noqa: T201  (the issue asks for the case count in the output)
    if new_files - pending_files:
        problems.append(f"files appeared outside the output and temp folders: {sorted(new_files - pending_files)}")
    problems += [f"{key} passes now: remove it from PENDING_CASES" for key, p in pending_cases.items() if p is None]
    assert not problems, f"{len(problems)} of {len(cases)} cases went wrong:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def server(pin):
    """A server of its own: the fuzz leaves saves, datasets and queue history behind that other tests must not see."""
    srv = start_server(pin, with_test_pack=True, extra_args=("--preview-method", "latent2rgb"))
    srv.start()
    yield srv
    srv.cleanup()


@pytest.fixture(scope="module")
def rewards(server):
    root = server.base_dir / "models" / "rewards"
    rt.write_all(root)
    return root


@pytest.fixture(scope="module")
def info(server, rewards):
    info = server.object_info()
    assert pack_nodes(info), "no Quickstep nodes in /object_info"
    return info


@pytest.mark.minimum_pin
def test_every_input_of_every_node_rejects_bad_values(server, info, capsys):
    """Registration-level: every pack node in /object_info, every input; only the values that must be refused."""
    cases = [c for n in pack_nodes(info) for c in node_cases(info, n) if c.expect == REJECT]
    assert {c.node_type for c in cases} == {n for n in pack_nodes(info) if any(info[n]["input"].values())}
    run_cases(server, cases, capsys, "bad values")


def test_every_valid_graph_and_value_runs(server, info, capsys):
    """The valid graph of every node, and the values that may be valid (strings, options, min and max)."""
    # a default graph may be refused clearly (a loader whose default file does not exist yet); the min, max and
    # option cases below must still run
    cases = [Case(n, "(valid graph)", None, EITHER, "defaults") for n in pack_nodes(info)]
    for case in cases:
        case.graph, case.node_id = graph_for(info, case.node_type)
    cases += [c for n in pack_nodes(info) for c in node_cases(info, n) if c.expect != REJECT]
    run_cases(server, cases, capsys, "valid and maybe-valid values")


def finding_cases(info: dict, outside_model: str) -> list[Case]:
    """Issue 12's six findings, one case (or a few) each, beyond what the generic cases already send."""
    cases = [
        # 1. names: an existing model outside models/rewards, traversal to /etc/passwd (no file content shown)
        Case("QuickstepLoadReward", "reward_name", outside_model, REJECT, "a model outside the folder",
             contains=("absolute path",), absent=("visual.", "conv1")),
        Case("QuickstepLoadReward", "reward_name", "../../../../../../etc/passwd", REJECT, "traversal to passwd",
             absent=("root:",)),
        Case("QuickstepLoadReward", "backbone", outside_model, REJECT, "a backbone outside the folder"),
        # 2. the largest seed, with fresh noise between steps
        Case("QuickstepTurboKSampler", "seed", 2**64 - 1, RUN, "max seed, 3 fresh-noise steps"),
        # 3. NaN and out-of-range floats
        Case("QuickstepTurboSampler", "s_noise", 2.005, REJECT, contains=("from 0 to 2",)),
        Case("QuickstepTurboSampler", "s_noise", 1e6, REJECT),
        Case("QuickstepTurboKSampler", "cfg", math.nan, REJECT, contains=("finite",)),
        Case("QuickstepRewardStack", "weight_1", math.nan, REJECT, "NaN weight, manual"),
        Case("QuickstepTurboScheduler", "denoise", 0.001, REJECT, "0.001 with 8 steps", contains=("0.01",)),
        Case("QuickstepTurboScheduler", "custom_timesteps", "nan", REJECT, contains=("finite",)),
        Case("QuickstepTurboScheduler", "custom_timesteps", "999, inf", REJECT, contains=("finite",)),
        # 4. wrong types never raise in validate_inputs
        Case("QuickstepTurboSampler", "eta", "abc", REJECT, contains=("FLOAT",)),
        # 6. a kind that does not match the file
        Case("QuickstepLoadReward", "kind", "aesthetic", REJECT, "aesthetic for a CLIP folder",
             contains=("model.safetensors", "clip reward", "not aesthetic")),
    ]
    extra = {("QuickstepTurboKSampler", "seed"): {"steps": 3, "eta_mode": "manual", "eta": 1.0},
             ("QuickstepRewardStack", "weight_1"): {"weighting": "manual"},
             ("QuickstepTurboScheduler", "denoise"): {"steps": 8},
             ("QuickstepLoadReward", "kind"): {"reward_name": "clip-tiny/model.safetensors"}}
    for case in cases:
        change = {case.input: case.value, **extra.get((case.node_type, case.input), {})}
        case.graph, case.node_id = graph_for(info, case.node_type, change)

    # 5. a latent and a conditioning of another family into an SD1 model
    for what, input_name, needles in (("an SD3 latent", "latent_image", ("16 channels", "SD3", "SD15")),
                                      ("SDXL conditioning", "positive", ("64-wide", "32-wide", "SD15"))):
        b = Builder(info)
        inputs = b.valid_inputs("QuickstepTurboKSampler")
        other = b.g.node("QuickstepTestTinyCheckpoint", family="sd3" if input_name == "latent_image" else "sdxl",
                         seed=0)
        if input_name == "latent_image":
            inputs[input_name] = b.g.node("VAEEncode", pixels=b.image().out(0), vae=other.out(2)).out(0)
        else:
            inputs[input_name] = b.g.node("CLIPTextEncode", clip=other.out(1), text="a red circle").out(0)
        node = b.g.node("QuickstepTurboKSampler", **inputs)
        b.consume(node, "QuickstepTurboKSampler")
        cases.append(Case("QuickstepTurboKSampler", input_name, None, REJECT, what, b.g.to_api(), node.id,
                          contains=needles))

    # 2. SamplerCustom with the Turbo sampler and the largest noise_seed
    b = Builder(info)
    turbo = b.g.node("QuickstepTurboSampler", eta_mode="manual", eta=1.0, s_noise=1.0)
    b.consume(turbo, "QuickstepTurboSampler")
    cases.append(Case("QuickstepTurboSampler", "(SamplerCustom noise_seed 2**64-1)", None, RUN, "max noise_seed",
                      b.g.to_api(), turbo.id))
    return cases


def test_issue_12_findings(server, info, capsys, tmp_path):
    outside = tmp_path / "elsewhere" / "HPS_v2.1_compressed.pt"
    rt.write_hps(outside, 1)
    run_cases(server, finding_cases(info, str(outside)), capsys, "issue-12 findings")
