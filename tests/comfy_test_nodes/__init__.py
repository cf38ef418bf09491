"""Test-only ComfyUI nodes, linked into the test host's custom_nodes/ (never shipped to users).

VideoUnlearningTestTinyTextEncoder loads a tiny text encoder file written by
tests/fixtures/tiny_models.py as a real ComfyUI CLIP, standing in for umT5 / LLaVA-Llama files
that cannot be downloaded here.
"""


async def comfy_entrypoint():
    from .nodes import TestNodesExtension

    return TestNodesExtension()
