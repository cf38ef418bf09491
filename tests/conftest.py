"""Test harness: a real ComfyUI in two layers.

In-process: ComfyUI's tree goes on sys.path in CPU mode with its base directory set to a fresh
temporary folder, and tests execute node classes directly. The pack is importable as
``video_unlearning`` (the name it has under custom_nodes/), so its relative imports resolve as they
do inside ComfyUI.

Through the server: ``comfy_server`` starts ComfyUI once per test session on a free port with the
same base directory (the pack and the test nodes linked into its custom_nodes/) and tests POST
API-format graphs to it.

Both see the tiny real-architecture models that ``tiny_models.write_all`` writes into that base
directory's models/ folder.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import comfyui_host  # noqa: E402

COMFYUI_DIR = Path(os.environ.get("VIDEO_UNLEARNING_COMFYUI") or comfyui_host.comfyui_dir())
if not (COMFYUI_DIR / "main.py").is_file():
    raise pytest.UsageError(
        f"No ComfyUI at {COMFYUI_DIR}: run the tests with `python scripts/dev.py test`, which sets it up."
    )
sys.path.insert(0, str(COMFYUI_DIR))
HOST_BASE = Path(tempfile.mkdtemp(prefix="video-unlearning-host-"))

# ComfyUI reads these at import time: CPU mode, and our base directory for models/ and friends.
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing(False)
from comfy.cli_args import args  # noqa: E402

args.cpu = True
args.base_directory = str(HOST_BASE)
args.disable_all_custom_nodes = False

# ComfyUI's own nodes.py, bound now: the repository root (the pytest working directory, and where
# benchmarks put it) holds this pack's nodes/ package, which must never stand in for it.
import nodes as comfy_nodes  # noqa: E402

if Path(comfy_nodes.__file__).resolve() != (COMFYUI_DIR / "nodes.py").resolve():
    raise pytest.UsageError(f"`import nodes` found {comfy_nodes.__file__}, not ComfyUI's nodes.py")


def _register_pack() -> None:
    """Import the repository as package ``video_unlearning`` (lazily: comfy loads on first use)."""
    spec = importlib.util.spec_from_file_location(
        comfyui_host.PACK_DIR_NAME,
        REPO_ROOT / "__init__.py",
        submodule_search_locations=[str(REPO_ROOT)],
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


_register_pack()


def pytest_collection_modifyitems(config, items):
    """A test parametrized with a tiny model (by name) or a family that this ComfyUI cannot build
    (``tiny_models.family_missing``: Kandinsky 5 before ComfyUI 0.3.7x) is skipped, saying why."""
    from fixtures import tiny_models

    families = {
        m.name: m.family for m in (*tiny_models.TINY_MODELS.values(), *tiny_models.VARIANT_MODELS.values())
    }
    families.update({f: f for f in tiny_models.FAMILY_MODULES})
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        for value in params.values():
            reason = (
                isinstance(value, str) and value in families and tiny_models.family_missing(families[value])
            )
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))
                break


@pytest.fixture(scope="session")
def host_base() -> Path:
    """The ComfyUI base directory shared by in-process tests and the server, with tiny models."""
    from fixtures import tiny_models

    comfyui_host.prepare_base_directory(HOST_BASE)
    tiny_models.write_all(HOST_BASE / "models")
    yield HOST_BASE


@pytest.fixture(scope="session")
def comfy(host_base: Path):
    """ComfyUI imported in-process (CPU), with folder_paths pointing at ``host_base``."""
    import comfy.model_management  # noqa: F401
    import folder_paths

    assert Path(folder_paths.base_path) == HOST_BASE
    return comfy


@pytest.fixture(scope="session")
def comfy_server(host_base: Path):
    """One real ComfyUI server for the whole session, on a free loopback port."""
    server = comfyui_host.ComfyServer(host_base, python=sys.executable, comfy=COMFYUI_DIR)
    server.start()
    yield server
    server.stop()
    artifacts = TESTS_DIR / "artifacts"
    artifacts.mkdir(exist_ok=True)
    shutil.copy(server.log_path, artifacts / "comfyui-server.log")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(HOST_BASE, ignore_errors=True)
