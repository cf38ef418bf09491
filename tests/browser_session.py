"""A headless Chromium on ComfyUI's real frontend, driven by selenium with Debian's chromedriver.

Only the system's ``chromium`` and ``chromedriver`` are used (``scripts/dev.py`` installs Debian's
packages when it runs as root); selenium is never allowed to download a browser or a driver.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

# Frontend settings for a quiet, readable canvas: no first-run template browser, no minimap over
# the graph, no low-detail drawing when a whole workflow is zoomed to fit.
SETTINGS = {
    "Comfy.TutorialCompleted": True,
    "Comfy.Minimap.Visible": False,
    "LiteGraph.Canvas.MinFontSizeForLOD": 0,
    "LiteGraph.Canvas.LowQualityRenderingZoomThreshold": 0.1,
    "Comfy.Workflow.ShowMissingModelsWarning": False,
    # The test host lacks the example workflows' model files (their names are ComfyUI's examples'):
    # Nodes 2.0 (frontend 1.49.6) would put an "Error" tab under each node that names one, making it
    # taller than on a machine that has the files.
    "Comfy.RightSidePanel.ShowErrorsTab": False,
}
# Set before the app's scripts run: the "Nodes 2.0" banner stays dismissed.
BEFORE_PAGE_SCRIPT = "try { localStorage.setItem('vueNodesBannerDismissed', 'true'); } catch (e) {}"


def chromium_paths() -> tuple[str, str] | None:
    """(chromium, chromedriver) from the system, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@dataclass
class ConsoleEntry:
    level: str
    source: str
    message: str

    def __str__(self) -> str:
        return f"[{self.level} {self.source}] {self.message}"


class Browser:
    """One Chromium window (1600 x 1000) on a ComfyUI server's web UI."""

    def __init__(self, url: str, width: int = 1600, height: int = 1000):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        paths = chromium_paths()
        if paths is None:
            raise RuntimeError("chromium and chromedriver are not installed")
        options = webdriver.ChromeOptions()
        options.binary_location = paths[0]
        for arg in (
            "--headless=new",
            "--no-sandbox",  # tests run as root in containers
            "--disable-dev-shm-usage",
            "--disable-gpu",
            f"--window-size={width},{height}",
            "--force-device-scale-factor=1",
            "--lang=en-US",
        ):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.url = url
        self.driver = webdriver.Chrome(service=Service(paths[1]), options=options)
        self.driver.set_script_timeout(120)
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": BEFORE_PAGE_SCRIPT})
        self.console: list[ConsoleEntry] = []

    def close(self) -> None:
        self.driver.quit()

    def put_settings(self, settings: dict = SETTINGS) -> None:
        """Store frontend settings for the server's default user (before the page loads)."""
        request = urllib.request.Request(
            self.url + "/api/settings",
            data=json.dumps(settings).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=30).read()

    def open(self, timeout_s: float = 120) -> None:
        """Load the web UI and wait until the app has registered every node type."""
        self.driver.get(self.url)
        self.wait_for(
            "return !!(window.app && window.app.graph && window.LiteGraph"
            " && Object.keys(window.LiteGraph.registered_node_types || {}).length > 100)",
            timeout_s,
            "the ComfyUI app did not start",
        )

    def wait_for(self, script: str, timeout_s: float, what: str, *args):
        """Run ``script`` until it returns a truthy value, which is returned."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.js(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} within {timeout_s}s")
            time.sleep(0.25)

    def js(self, script: str, *args):
        """Run ``script`` (a function body; its arguments are ``args``) and return its value."""
        return self.driver.execute_script("const args = arguments;\n" + script, *args)

    def js_async(self, body: str, *args):
        """Run ``body`` as an async function of ``args``; its return value (or thrown error) comes back."""
        script = (
            "const done = arguments[arguments.length - 1];"
            f"(async (...args) => {{ {body} }})(...Array.from(arguments).slice(0, -1))"
            ".then((v) => done({ok: v === undefined ? null : v}),"
            " (e) => done({error: String((e && e.stack) || e)}));"
        )
        result = self.driver.execute_async_script(script, *args)
        if "error" in result:
            raise RuntimeError(f"page script failed: {result['error']}")
        return result["ok"]

    def read_console(self) -> list[ConsoleEntry]:
        """Console messages since the last call (they are also kept in ``self.console``)."""
        entries = [
            ConsoleEntry(e["level"], e.get("source", ""), e["message"])
            for e in self.driver.get_log("browser")
        ]
        self.console += entries
        return entries

    def load_workflow(self, workflow: dict, name: str) -> None:
        self.js_async("await window.app.loadGraphData(args[0], true, true, args[1]);", workflow, name)

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
        return path
