"""Small builders for API-format workflows (the format `POST /prompt` takes)."""

from __future__ import annotations


class Graph:
    def __init__(self):
        self.nodes: dict[str, dict] = {}

    def node(self, class_type: str, **inputs) -> Node:
        node_id = str(len(self.nodes) + 1)
        self.nodes[node_id] = {"class_type": class_type, "inputs": inputs}
        return Node(node_id)

    def to_api(self) -> dict:
        return self.nodes


class Node:
    def __init__(self, node_id: str):
        self.id = node_id

    def out(self, index: int = 0) -> list:
        return [self.id, index]


def tiny_text_to_image(family: str, steps: int = 2, size: int = 64, seed: int = 0):
    """Tiny checkpoint -> prompts -> empty latent, returned for a sampler to be attached."""
    g = Graph()
    ckpt = g.node("QuickstepTestTinyCheckpoint", family=family, seed=0)
    pos = g.node("CLIPTextEncode", clip=ckpt.out(1), text="a red circle left of a blue square")
    neg = g.node("CLIPTextEncode", clip=ckpt.out(1), text="")
    empty = "EmptySD3LatentImage" if family in ("sd3", "flux") else "EmptyLatentImage"
    latent = g.node(empty, width=size, height=size, batch_size=1)
    return g, ckpt, pos, neg, latent
