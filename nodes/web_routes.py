"""Read-only HTTP routes for the pack's web extension (``web/video_unlearning.js``).

``GET /video_unlearning/presets`` (also under ``/api``): the refusal-vector presets' prompt pairs,
which the preset picker on UnlearnRefusalEstimate copies into the node's prompt lists. Nothing here
writes a file or changes server state.
"""

from __future__ import annotations

import sys

from ..erasure import presets

PRESETS_PATH = "/video_unlearning/presets"
_registered: set[int] = set()  # id() of each server instance the routes went to


async def _presets(request):
    from aiohttp import web

    return web.json_response(
        {"custom": presets.CUSTOM, "name_field": presets.NAME_FIELD, "presets": presets.catalogue()}
    )


def register() -> bool:
    """Add the routes to the running ComfyUI server once; False (and nothing done) without one."""
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None:
        return False
    if id(instance) not in _registered:
        instance.routes.get(PRESETS_PATH)(_presets)
        _registered.add(id(instance))
    return True
