#!/usr/bin/env python3
"""Developer commands for the Video Unlearning pack.

    python scripts/dev.py test [pytest args]   set everything up, lint, run the whole test suite
    python scripts/dev.py demo                 set everything up, run the demo through a real ComfyUI
    python scripts/dev.py setup                only set up (.venv/ and the ComfyUI tree in .cache/)
    python scripts/dev.py host                 start the test host and keep it running (Ctrl-C ends)
    python scripts/dev.py bench NAME [args]    run a benchmark: efficacy, attacks, perf, lexicon (--help)
    python scripts/dev.py lint                 ruff check and ruff format --check

Every command first makes sure of its environment, so a fresh clone needs nothing else:
a virtual environment with torch, ComfyUI's requirements, the pack's requirements and the dev
tools; and the ComfyUI tree (see scripts/comfyui_host.py).

Which ComfyUI: the bundled 0.3.75 by default (virtual environment .venv/). Every command takes
``--comfyui PATH``, PATH a ComfyUI tree or a .tar.gz of one (unpacked once under .cache/);
``COMFYUI_PATH=PATH`` does the same for a tree. Each other ComfyUI version gets its own virtual
environment, .cache/venvs/comfyui-<version>/, with that version's own requirements.txt (its
frontend included) and the torch set that imports beside it (torch_requirements).
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import comfyui_host  # noqa: E402

REPO_ROOT = comfyui_host.REPO_ROOT
BUNDLED_VENV = REPO_ROOT / ".venv"
VENVS_DIR = comfyui_host.CACHE_DIR / "venvs"
DEV_REQUIREMENTS = REPO_ROOT / "scripts" / "requirements-dev.txt"
STAMP_NAME = ".video-unlearning-installed"


@dataclass(frozen=True)
class Environment:
    """One leg of the test matrix: a ComfyUI tree and the virtual environment that runs it."""

    comfy: Path
    version: str
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def torch_requirements(comfy: Path) -> list[str]:
    """The torch set that imports beside the ComfyUI tree ``comfy`` on this kind of machine.

    PyPI's torchvision does not import beside the CPU-only torch file, so ComfyUI (which imports
    torchvision at start-up) needs a matched pair; the build runs on CPU when there is no GPU.
    A ComfyUI that imports torchaudio at start-up (0.33: comfy/sd.py -> LTX audio VAE) needs the
    2.9.1 set, the newest with a torchaudio on PyPI that matches its torch.
    """
    override = os.environ.get("VIDEO_UNLEARNING_TORCH")
    if override:
        return override.split()
    if comfyui_host.imports_at_startup(comfy, "torchaudio"):
        return ["torch==2.9.1", "torchvision==0.24.1", "torchaudio==2.9.1"]
    if platform.machine() in ("aarch64", "arm64"):
        return ["torch==2.9.1", "torchvision==0.24.1"]
    return ["torch==2.14.1", "torchvision==0.29.1"]


def run(cmd: list[str], **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True, **kwargs)


def pip(env: Environment, *args: str) -> None:
    run([str(env.python), "-m", "pip", "install", "--disable-pip-version-check", *args])


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


def select_comfyui(choice: str | None) -> Environment:
    """The ComfyUI to use (``--comfyui`` tree or archive, else COMFYUI_PATH, else the bundled one)
    and its virtual environment."""
    if choice:
        path = Path(choice)
        if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
            comfy = comfyui_host.extract_comfyui_archive(path)
        else:
            comfy = comfyui_host.checked_comfyui_tree(path, f"--comfyui {choice}")
    elif os.environ.get("COMFYUI_PATH"):
        comfy = comfyui_host.comfyui_dir()
    else:
        comfy = comfyui_host.ensure_bundled_comfyui()
    version = comfyui_host.comfyui_version(comfy)
    if comfy.resolve() == comfyui_host.bundled_comfyui_dir().resolve():
        venv = BUNDLED_VENV
    else:
        venv = VENVS_DIR / f"comfyui-{version}"
    return Environment(comfy, version, venv)


def ensure_environment(choice: str | None, browser: bool) -> Environment:
    """Create the leg's virtual environment and install everything the tests and the demo need;
    ``browser``: also Debian's chromium (only the browser test uses it, so the demo and the
    benchmarks never install it)."""
    if browser:
        ensure_browser()
    env = select_comfyui(choice)
    print(f"ComfyUI {env.version} at {env.comfy}; virtual environment {env.venv}", flush=True)
    if not env.python.exists():
        env.venv.parent.mkdir(parents=True, exist_ok=True)
        run([sys.executable, "-m", "venv", str(env.venv)])
    torch = torch_requirements(env.comfy)
    comfy_reqs = comfyui_host.comfyui_requirements(env.comfy) + ["requests"]
    wanted = {
        "torch": torch,
        "comfyui": comfy_reqs,
        "pack": (REPO_ROOT / "requirements.txt").read_text(),
        "dev": DEV_REQUIREMENTS.read_text(),
    }
    digest = hashlib.sha256(repr(sorted(wanted.items())).encode()).hexdigest()
    stamp = env.venv / STAMP_NAME
    if stamp.exists() and stamp.read_text() == digest:
        return env
    # torch first, so that nothing below pulls another build of it; every later step names the
    # same set again so that pip keeps it.
    pip(env, "--quiet", *torch)
    pip(env, "--quiet", *torch, *comfy_reqs)
    pip(env, "--quiet", *torch, "-r", str(REPO_ROOT / "requirements.txt"))
    pip(env, "--quiet", *torch, "-r", str(DEV_REQUIREMENTS))
    stamp.write_text(digest)
    return env


def in_venv(env: Environment, args: list[str]) -> int:
    full_env = dict(os.environ, VIDEO_UNLEARNING_COMFYUI=str(env.comfy))
    print("+", env.python, " ".join(args), flush=True)
    return subprocess.run([str(env.python), *args], cwd=REPO_ROOT, env=full_env).returncode


def lint(env: Environment) -> int:
    code = in_venv(env, ["-m", "ruff", "check", "."])
    return code or in_venv(env, ["-m", "ruff", "format", "--check", "."])


def cmd_test(env: Environment, extra: list[str]) -> int:
    code = lint(env)
    if code:
        print(f"ruff failed: run `{env.venv}/bin/ruff format .` and fix what `ruff check` lists.")
        return code
    return in_venv(env, ["-m", "pytest", *extra])


def cmd_demo(env: Environment, extra: list[str]) -> int:
    return in_venv(env, ["scripts/demo.py", *extra])


def cmd_host(env: Environment, extra: list[str]) -> int:
    return in_venv(env, ["scripts/demo.py", "--serve", *extra])


BENCHMARKS = {
    "efficacy": "benchmarks/efficacy.py",
    "attacks": "benchmarks/attacks.py",
    "perf": "benchmarks/perf.py",
    "lexicon": "benchmarks/lexicon_probe.py",
}


def cmd_bench(env: Environment, extra: list[str]) -> int:
    return in_venv(env, [BENCHMARKS[extra[0]], *extra[1:]])


def comfyui_option(argv: list[str]) -> tuple[str | None, list[str]]:
    """``--comfyui PATH`` (or ``--comfyui=PATH``) taken out of ``argv``, and the rest."""
    rest, choice, i = [], None, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--comfyui":
            if i + 1 >= len(argv):
                raise SystemExit("--comfyui needs a path: a ComfyUI tree or a .tar.gz of one")
            choice, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--comfyui="):
            choice = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return choice, rest


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    command, (choice, extra) = argv[0], comfyui_option(argv[1:])
    handlers = {"test": cmd_test, "demo": cmd_demo, "host": cmd_host, "bench": cmd_bench}
    if command not in (*handlers, "setup", "lint"):
        print(f"unknown command {command!r}; expected one of: setup, test, demo, host, lint, bench")
        return 2
    if command == "bench" and (not extra or extra[0] not in BENCHMARKS):
        print(f"usage: python scripts/dev.py bench {{{'|'.join(BENCHMARKS)}}} [args]")
        return 2
    env = ensure_environment(choice, browser=command in ("setup", "test"))
    if command == "setup":
        return 0
    if command == "lint":
        return lint(env)
    return handlers[command](env, extra)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
