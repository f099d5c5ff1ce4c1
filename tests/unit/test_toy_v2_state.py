"""The v2 toy training plumbing without ComfyUI: one-file atomic state that resumes exactly, and the canonical
statement of a caption (`train_text_v2.slots`) that the v2 text encoder's hard negatives are built on."""

import dataclasses

import pytest
import torch

from quickstep.toyworld import mismatch, scenes, train_state
from quickstep.toyworld.train_text_v2 import Tables, mirrored, slots


def _run(steps, state=None, start=None):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    step = 0
    if state is not None and state.is_file():
        step = train_state.load_state(state, {"net": net}, opt, gen)["step"]
    while step < steps:
        x = torch.randn(16, 4, generator=gen)
        loss = (net(x) - x.sum(1, keepdim=True)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if state is not None:
            train_state.save_state(state, {"net": net}, opt, gen, {"step": step})
    return net


def test_state_resumes_exactly(tmp_path):
    straight = _run(6)
    state = tmp_path / "state.safetensors"
    _run(3, state)  # "killed" after step 3
    resumed = _run(6, state)
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not list(tmp_path.glob("*.tmp"))  # written through a temporary file, then renamed


def test_missing_state_means_a_fresh_start(tmp_path):
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(net.parameters())
    assert train_state.load_state(tmp_path / "none.safetensors", {"net": net}, opt, torch.Generator()) is None


def test_paraphrases_share_a_statement_and_hard_negatives_do_not():
    for p in scenes.all_prompts():
        q = mismatch.paraphrase(p)
        if q is not None:
            assert slots(q) == slots(p), (p.text, q.text)
        for kind in ("flipped_relation", "swapped_objects", "swapped_colours", "wrong_count"):
            for r in mismatch.prompt_edits(p, kind):
                assert slots(r) != slots(p), (p.text, r.text)
    left = scenes.parse_prompt("a photo of a circle left of a square")
    assert mirrored(left).text == "a photo of a circle right of a square"
    above = scenes.parse_prompt("a photo of a circle above a square")
    assert mirrored(above) == above  # a left-right mirror keeps above/below


def test_tables_use_training_prompts_only():
    tab = Tables()
    held = {p.text for p in scenes.heldout_prompts()}
    assert not held & set(tab.texts)
    assert tab.hard.any(1).float().mean() > 0.8  # nearly every training caption has a training hard negative
    assert not (tab.hard & (tab.meaning[:, None] == tab.meaning[None, :])).any()  # never its own statement
    flip = tab.mirror_prompt
    for i, p in enumerate(tab.prompts):
        if flip[i] >= 0:
            assert slots(tab.prompts[int(flip[i])]) == slots(mirrored(p))


@pytest.mark.parametrize("text", ["a photo of two circles", "a photo of a red circle and a blue square"])
def test_slots_read_count_and_colours(text):
    p = scenes.parse_prompt(text)
    other = dataclasses.replace(p, count=3) if p.category == "counting" else mismatch.prompt_edits(p, "wrong_colour")[0]
    assert slots(other) != slots(p)
