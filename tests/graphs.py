"""Small builders for API-format graphs (what POST /prompt takes), shared by tests and the demo."""

from __future__ import annotations

from itertools import count


class Graph:
    """An API-format graph under construction: ``node()`` returns the new node's id."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict] = {}
        self._ids = count(1)

    def node(self, class_type: str, **inputs) -> str:
        node_id = str(next(self._ids))
        self.nodes[node_id] = {"class_type": class_type, "inputs": inputs}
        return node_id

    @staticmethod
    def out(node_id: str, index: int = 0) -> list:
        """A link to output ``index`` of ``node_id``."""
        return [node_id, index]


def tiny_text_to_video(graph: Graph, spec, prompt: str, *, seed: int = 0, steps: int = 2) -> dict[str, str]:
    """UNETLoader + tiny text encoder + text encode + empty video latent + KSampler for a tiny model.

    Returns the ids of the nodes by role so a caller can branch off them.
    """
    unet = graph.node("UNETLoader", unet_name=spec.filename, weight_dtype="default")
    clip = graph.node(
        "VideoUnlearningTestTinyTextEncoder", clip_name=spec.text_encoder_file, type=spec.family
    )
    positive = graph.node("CLIPTextEncode", text=prompt, clip=Graph.out(clip))
    negative = graph.node("CLIPTextEncode", text="", clip=Graph.out(clip))
    latent = graph.node("EmptyHunyuanLatentVideo", width=32, height=32, length=5, batch_size=1)
    sampler = graph.node(
        "KSampler",
        model=Graph.out(unet),
        positive=Graph.out(positive),
        negative=Graph.out(negative),
        latent_image=Graph.out(latent),
        seed=seed,
        steps=steps,
        cfg=1.0,
        sampler_name="euler",
        scheduler="simple",
        denoise=1.0,
    )
    return {"model": unet, "clip": clip, "positive": positive, "negative": negative, "sampler": sampler}
