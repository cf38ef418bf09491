"""The pack's ComfyUI nodes. This package is the only code in the pack that imports comfy.

Each node module lists its node classes in ``NODES``; node ids are a contract with users' saved
workflows, so they never change once released.
"""

from comfy_api.latest import ComfyExtension, io

from . import (
    attack_nodes,
    lora_file_nodes,
    nudenet_nodes,
    refusal_nodes,
    toy_world_nodes,
    train_nodes,
    web_routes,
)

NODE_MODULES = (nudenet_nodes, refusal_nodes, train_nodes, lora_file_nodes, toy_world_nodes, attack_nodes)


def all_nodes() -> list[type[io.ComfyNode]]:
    return [node for module in NODE_MODULES for node in module.NODES]


class VideoUnlearningExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        # ComfyUI 0.3.75 calls this once at start-up (and never on_load): the web extension's
        # read-only GET routes (preset picker) are added here.
        web_routes.register()
        return all_nodes()
