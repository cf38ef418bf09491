"""Video Unlearning: erase concepts from Wan 2.1, Wan 2.2 and HunyuanVideo inside ComfyUI.

ComfyUI imports this folder as a custom node package and calls ``comfy_entrypoint``.
The node modules import comfy, so they load only when ComfyUI asks for them; ``erasure/``
stays importable without ComfyUI.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes import VideoUnlearningExtension

    return VideoUnlearningExtension()
