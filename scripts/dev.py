#!/usr/bin/env python3
"""Developer commands for the Video Unlearning pack.

    python scripts/dev.py test [pytest args]   set everything up, lint, run the whole test suite
    python scripts/dev.py demo                 set everything up, run the demo through a real ComfyUI
    python scripts/dev.py setup                only set up (.venv/ and the ComfyUI tree in .cache/)
    python scripts/dev.py host                 start the test host and keep it running (Ctrl-C ends)
    python scripts/dev.py bench efficacy|perf [args]   run a benchmark (benchmarks/<name>.py --help)
    python scripts/dev.py lint                 ruff check and ruff format --check

Every command first makes sure of its environment, so a fresh clone needs nothing else:
a virtual environment in .venv/ with torch (from this machine's local wheels), ComfyUI's
requirements, the pack's requirements and the dev tools; and the ComfyUI tree (see
scripts/comfyui_host.py). Set COMFYUI_PATH to test against another ComfyUI.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import comfyui_host  # noqa: E402

REPO_ROOT = comfyui_host.REPO_ROOT
VENV = REPO_ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
DEV_REQUIREMENTS = REPO_ROOT / "scripts" / "requirements-dev.txt"
STAMP = VENV / ".video-unlearning-installed"


def torch_requirements() -> list[str]:
    """The torch + torchvision pair that imports together on this kind of machine.

    PyPI's torchvision does not import beside the CPU-only torch file, so ComfyUI (which imports
    torchvision at start-up) needs a matched pair; the build runs on CPU when there is no GPU.
    """
    override = os.environ.get("VIDEO_UNLEARNING_TORCH")
    if override:
        return override.split()
    if platform.machine() in ("aarch64", "arm64"):
        return ["torch==2.9.1", "torchvision==0.24.1"]
    return ["torch==2.14.1", "torchvision==0.29.1"]


def run(cmd: list[str], **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True, **kwargs)


def pip(*args: str) -> None:
    run([str(VENV_PYTHON), "-m", "pip", "install", "--disable-pip-version-check", *args])


# Debian packages the browser test drives (tests/test_browser.py); never a browser download.
BROWSER_PACKAGES = ("chromium", "chromium-driver")


def ensure_browser() -> None:
    """Install Debian's chromium and chromedriver when missing and we may (root, apt-get present).

    Without them the browser test is skipped (and says why); nothing else needs them.
    """
    import shutil

    if shutil.which("chromium") and shutil.which("chromedriver"):
        return
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        print("chromium or chromedriver missing: the browser test will be skipped (run dev.py as root)")
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        run(["apt-get", "update", "-q"], env=env)
        run(["apt-get", "install", "-y", "-q", *BROWSER_PACKAGES], env=env)
    except subprocess.CalledProcessError as error:
        print(f"could not install {' '.join(BROWSER_PACKAGES)} ({error}): the browser test will be skipped")


def ensure_environment() -> Path:
    """Create .venv and install everything the tests and the demo need; return ComfyUI's path."""
    ensure_browser()
    if not VENV_PYTHON.exists():
        run([sys.executable, "-m", "venv", str(VENV)])
    if os.environ.get("COMFYUI_PATH"):
        comfy = comfyui_host.comfyui_dir()
    else:
        comfy = comfyui_host.ensure_bundled_comfyui(str(VENV_PYTHON))
    comfy_reqs = comfyui_host.comfyui_requirements(comfy) + ["requests"]
    wanted = {
        "torch": torch_requirements(),
        "comfyui": comfy_reqs,
        "pack": (REPO_ROOT / "requirements.txt").read_text(),
        "dev": DEV_REQUIREMENTS.read_text(),
    }
    digest = hashlib.sha256(repr(sorted(wanted.items())).encode()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return comfy
    # torch first, so that nothing below pulls another build of it.
    pip("--quiet", *wanted["torch"])
    pip("--quiet", *wanted["torch"], *comfy_reqs)
    pip("--quiet", *wanted["torch"], "-r", str(REPO_ROOT / "requirements.txt"))
    pip("--quiet", "-r", str(DEV_REQUIREMENTS))
    STAMP.write_text(digest)
    return comfy


def in_venv(args: list[str], env: dict | None = None) -> int:
    full_env = dict(os.environ, **(env or {}))
    print("+", VENV_PYTHON, " ".join(args), flush=True)
    return subprocess.run([str(VENV_PYTHON), *args], cwd=REPO_ROOT, env=full_env).returncode


def lint() -> int:
    code = in_venv(["-m", "ruff", "check", "."])
    return code or in_venv(["-m", "ruff", "format", "--check", "."])


def cmd_test(extra: list[str]) -> int:
    comfy = ensure_environment()
    code = lint()
    if code:
        print("ruff failed: run `.venv/bin/ruff format .` and fix what `ruff check` lists.")
        return code
    return in_venv(["-m", "pytest", *extra], env={"VIDEO_UNLEARNING_COMFYUI": str(comfy)})


def cmd_demo(extra: list[str]) -> int:
    comfy = ensure_environment()
    return in_venv(["scripts/demo.py", *extra], env={"VIDEO_UNLEARNING_COMFYUI": str(comfy)})


def cmd_host(extra: list[str]) -> int:
    comfy = ensure_environment()
    return in_venv(["scripts/demo.py", "--serve", *extra], env={"VIDEO_UNLEARNING_COMFYUI": str(comfy)})


BENCHMARKS = {"efficacy": "benchmarks/efficacy.py", "perf": "benchmarks/perf.py"}


def cmd_bench(extra: list[str]) -> int:
    if not extra or extra[0] not in BENCHMARKS:
        print(f"usage: python scripts/dev.py bench {{{'|'.join(BENCHMARKS)}}} [args]")
        return 2
    comfy = ensure_environment()
    return in_venv([BENCHMARKS[extra[0]], *extra[1:]], env={"VIDEO_UNLEARNING_COMFYUI": str(comfy)})


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    command, extra = argv[0], argv[1:]
    if command == "setup":
        ensure_environment()
        return 0
    if command == "lint":
        ensure_environment()
        return lint()
    handlers = {"test": cmd_test, "demo": cmd_demo, "host": cmd_host, "bench": cmd_bench}
    if command not in handlers:
        print(f"unknown command {command!r}; expected one of: setup, test, demo, host, lint, bench")
        return 2
    return handlers[command](extra)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
