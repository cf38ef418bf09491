"""Read-only HTTP routes for the pack's web extension (``web/video_unlearning.js``).

``GET /video_unlearning/presets`` (also under ``/api``): the refusal-vector presets' prompt pairs,
which the preset picker on UnlearnRefusalEstimate copies into the node's prompt lists.

``GET /workflow_templates/<pack folder>/<workflow>.jpg`` (also under ``/api``, where the frontend's
template browser asks for it): the thumbnail of one of the pack's example workflows, for ComfyUIs
that no longer serve it. ComfyUI 0.3.75 and 0.33.0 serve a pack's whole workflows/ folder at
``/api/workflow_templates/<pack folder>/`` themselves, as a static route added to the app before
the route table's routes, so there ComfyUI's own route answers the frontend and this one answers
only the unprefixed path. Newer ComfyUI serves only the ``*.json`` of that folder, from a
route-table route added after the routes custom nodes add while they load: there this route
answers the thumbnails. It matches nothing else (one folder, ``.jpg``, the shipped workflows'
names), so every other request still reaches ComfyUI's own routes.

Nothing here writes a file or changes server state.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..erasure import presets

PRESETS_PATH = "/video_unlearning/presets"
WORKFLOWS_DIR = Path(__file__).resolve().parents[1] / "workflows"
# The name ComfyUI lists the pack's workflows under: its folder's name in custom_nodes/ (the path
# as imported, not resolved: the folder may be a link to a checkout of another name).
PACK_FOLDER = os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
THUMBNAIL_PATH = f"/workflow_templates/{PACK_FOLDER}/{{name}}.jpg"
_registered: set[int] = set()  # id() of each server instance the routes went to


async def _presets(request):
    from aiohttp import web

    return web.json_response(
        {"custom": presets.CUSTOM, "name_field": presets.NAME_FIELD, "presets": presets.catalogue()}
    )


async def _thumbnail(request):
    from aiohttp import web

    name = request.match_info["name"]
    shipped = {p.stem for p in WORKFLOWS_DIR.glob("*.json")}
    path = WORKFLOWS_DIR / f"{name}.jpg"
    if name not in shipped or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Content-Type": "image/jpeg"})


def register() -> bool:
    """Add the routes to the running ComfyUI server once; False (and nothing done) without one."""
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None:
        return False
    if id(instance) not in _registered:
        instance.routes.get(PRESETS_PATH)(_presets)
        if "{" not in PACK_FOLDER and "}" not in PACK_FOLDER:  # a folder name a route can spell
            instance.routes.get(THUMBNAIL_PATH)(_thumbnail)
        _registered.add(id(instance))
    return True
