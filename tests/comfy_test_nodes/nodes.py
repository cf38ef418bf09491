"""The test host's loader node for the tiny text encoders."""

import folder_paths
from comfy_api.latest import ComfyExtension, io

from . import tiny_text_encoder


class TinyTextEncoderLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VideoUnlearningTestTinyTextEncoder",
            display_name="Tiny Text Encoder (tests)",
            category="video_unlearning/testing",
            inputs=[
                io.Combo.Input("clip_name", options=folder_paths.get_filename_list("text_encoders")),
                io.Combo.Input("type", options=list(tiny_text_encoder.KINDS)),
            ],
            outputs=[io.Clip.Output()],
        )

    @classmethod
    def execute(cls, clip_name: str, type: str) -> io.NodeOutput:
        path = folder_paths.get_full_path_or_raise("text_encoders", clip_name)
        return io.NodeOutput(tiny_text_encoder.load_clip(path, type))


class TestNodesExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [TinyTextEncoderLoader]
