"""Small builders for API-format graphs (what POST /prompt takes), shared by tests and the demo."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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


def schema_defaults(node_cls) -> dict:
    """The declared default of every input of a V3 node class that has one."""
    inputs = node_cls.GET_SCHEMA().inputs
    return {i.id: i.default for i in inputs if getattr(i, "default", None) is not None}


def text_to_video(
    graph: Graph,
    model: str,
    clip: str,
    prompt: str,
    *,
    width: int = 32,
    height: int = 32,
    length: int = 5,
    batch_size: int = 1,
    seed: int = 0,
    steps: int = 2,
    cfg: float = 1.0,
    sampler_name: str = "euler",
    scheduler: str = "simple",
    denoise: float = 1.0,
) -> dict[str, str]:
    """Text encode (prompt, empty negative) + empty video latent + KSampler on given model/clip nodes.

    Returns the ids of the nodes by role so a caller can branch off them.
    """
    positive = graph.node("CLIPTextEncode", text=prompt, clip=Graph.out(clip))
    negative = graph.node("CLIPTextEncode", text="", clip=Graph.out(clip))
    latent = graph.node(
        "EmptyHunyuanLatentVideo", width=width, height=height, length=length, batch_size=batch_size
    )
    sampler = graph.node(
        "KSampler",
        model=Graph.out(model),
        positive=Graph.out(positive),
        negative=Graph.out(negative),
        latent_image=Graph.out(latent),
        seed=seed,
        steps=steps,
        cfg=cfg,
        sampler_name=sampler_name,
        scheduler=scheduler,
        denoise=denoise,
    )
    return {"model": model, "clip": clip, "positive": positive, "negative": negative, "sampler": sampler}


def tiny_text_to_video(graph: Graph, spec, prompt: str, *, seed: int = 0, steps: int = 2) -> dict[str, str]:
    """``text_to_video`` on a tiny model loaded by UNETLoader and its tiny text encoder."""
    unet = graph.node("UNETLoader", unet_name=spec.filename, weight_dtype="default")
    clip = graph.node(
        "VideoUnlearningTestTinyTextEncoder", clip_name=spec.text_encoder_file, type=spec.family
    )
    return text_to_video(graph, unet, clip, prompt, seed=seed, steps=steps)


@contextlib.contextmanager
def as_comfyui_runs_nodes() -> Iterator[None]:
    """Inference mode, as ComfyUI runs every node, and one torch thread: the tiny models are too
    small to gain from more, and a second thread waiting on a busy core made each op 30 times
    slower on the 2-core test machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.set_num_threads(threads)
