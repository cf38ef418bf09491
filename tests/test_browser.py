"""The pack in a real browser: headless Chromium (Debian's package) on the real ComfyUI frontend
served by the test host.

Shows that each example workflow loads without console errors, with every node type, link and widget
value as the file has them, and that the frontend's own conversion of it (what Queue sends) equals
``workflow_format.api_from_ui``; that the preset picker fills the prompt lists; that the extension
survives events for nodes that are not there; and that queuing the toy-world demo draws the live
loss chart on UnlearnTrainLoRA, the verdict badges on NudeNetCheck and the edit report.

Screenshots go to tests/artifacts/browser/. With VIDEO_UNLEARNING_UPDATE_SCREENSHOTS=1 the test also
writes the template-browser thumbnails (workflows/<name>.jpg) and the README's pictures
(workflows/screenshots/), each atomically.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pytest
import workflow_runs
from browser_session import Browser, ConsoleEntry, chromium_paths

import workflow_format

try:
    import selenium  # noqa: F401
except ImportError:  # pragma: no cover - scripts/requirements-dev.txt installs it
    selenium = None

pytestmark = pytest.mark.skipif(
    selenium is None or chromium_paths() is None,
    reason="needs selenium and Debian's chromium + chromium-driver (scripts/dev.py installs them as root)",
)

TESTS_DIR = Path(__file__).resolve().parent
ARTIFACTS = TESTS_DIR / "artifacts" / "browser"
WORKFLOWS_DIR = TESTS_DIR.parent / "workflows"
README_IMAGES = WORKFLOWS_DIR / "screenshots"
UPDATE = os.environ.get("VIDEO_UNLEARNING_UPDATE_SCREENSHOTS") == "1"
WORKFLOW_NAMES = sorted(p.stem for p in WORKFLOWS_DIR.glob("*.json"))
DEMO = "toy_world_erasure"
VIEWPORT = (1600, 1000)
THUMBNAIL_SIZE = 512
RUN_TIMEOUT_S = 600

# Console messages that are not failures, and why:
IGNORED = [
    # The frontend asks comfy.org for release notes and node-registry data; the test host has no
    # internet (and a user's machine may not either).
    (
        "external request",
        re.compile(r"^https?://(?!127\.0\.0\.1[:/]|localhost[:/])\S+ - Failed to load resource"),
    ),
    # Files a fresh ComfyUI user does not have yet: the frontend asks and gets 404.
    (
        "first-run user files",
        re.compile(
            r"^http://127\.0\.0\.1:\d+/(favicon\.ico|user\.css|api/userdata/user\.css|"
            r"api/userdata\?dir=(workflows|subgraphs)\S*|api/userdata/comfy\.templates\.json) - "
            r"Failed to load resource: the server responded with a status of 404"
        ),
    ),
]
# Logged by frontend 1.32.9 itself while it starts (its settings store, useRenderModeSetting), also
# with no custom node installed at all: allowed only before the first workflow is loaded.
STARTUP_FRONTEND_BUG = re.compile(
    r"TypeError: Cannot read properties of undefined \(reading 'id'\)\s+at onChange"
)


def unexpected(entries: list[ConsoleEntry], starting: bool = False) -> list[str]:
    """The console entries that fail the test: severe ones not explained above, and anything our
    extension logged (its guards log a warning instead of throwing)."""
    bad = []
    for entry in entries:
        ours = "video_unlearning" in entry.message
        if ours and entry.level in ("SEVERE", "WARNING"):
            bad.append(str(entry))
            continue
        if entry.level != "SEVERE" or any(rule.search(entry.message) for _, rule in IGNORED):
            continue
        if (
            starting
            and STARTUP_FRONTEND_BUG.search(entry.message)
            and "video_unlearning" not in entry.message
        ):
            continue
        bad.append(str(entry))
    return bad


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.get("/object_info")


@pytest.fixture(scope="module")
def browser(comfy_server):
    session = Browser(comfy_server.url, *VIEWPORT)
    try:
        session.put_settings()
        session.open()
        session.wait_for("return window.__videoUnlearning?.presetsLoaded", 30, "the preset list did not load")
        session.startup_errors = unexpected(session.read_console(), starting=True)
        yield session
    finally:
        session.read_console()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "console.log").write_text("\n".join(map(str, session.console)) + "\n")
        session.close()


def load(browser: Browser, name: str) -> dict:
    workflow = workflow_runs.load(name)
    browser.load_workflow(workflow, name)
    browser.js_async("await new Promise((r) => setTimeout(r, 300));")
    return workflow


# ---- Page helpers (the canvas in graph coordinates; ds: screen = (graph + offset) * scale) ----------

SHOW_REGION = """
const [x, y, w, h, scale] = args;
app.canvas.ds.scale = scale;
app.canvas.ds.offset = [-x, -y];
app.canvas.setDirty(true, true);
await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(r, 200))));
"""
GRAPH_BOUNDS = """
const boxes = app.graph._nodes.map((n) => n.getBounding());
for (const g of app.graph._groups ?? []) boxes.push(g._bounding ?? g.bounding);
const left = Math.min(...boxes.map((b) => b[0])), top = Math.min(...boxes.map((b) => b[1]));
const right = Math.max(...boxes.map((b) => b[0] + b[2])), bottom = Math.max(...boxes.map((b) => b[1] + b[3]));
return [left, top, right - left, bottom - top];
"""
NODE_BOUNDS = """
const boxes = args[0].map((id) => app.graph.getNodeById(id).getBounding());
const left = Math.min(...boxes.map((b) => b[0])), top = Math.min(...boxes.map((b) => b[1]));
const right = Math.max(...boxes.map((b) => b[0] + b[2])), bottom = Math.max(...boxes.map((b) => b[1] + b[3]));
return [left, top, right - left, bottom - top];
"""


def set_viewport(browser: Browser, width: int, height: int) -> None:
    browser.driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    browser.js_async("await new Promise((r) => setTimeout(r, 300));")


def shoot(browser: Browser, bounds, path: Path, max_size: tuple[int, int], margin=24, fill=False) -> Path:
    """Screenshot of the graph region ``bounds`` (graph units), as large as fits ``max_size``; with
    ``fill`` the picture is ``max_size`` with the region centred in it."""
    x, y, w, h = bounds
    x, y, w, h = x - margin, y - margin, w + 2 * margin, h + 2 * margin
    scale = min(max_size[0] / w, max_size[1] / h, 1.0)
    size = max_size if fill else (round(w * scale), round(h * scale))
    x -= (size[0] / scale - w) / 2
    y -= (size[1] / scale - h) / 2
    set_viewport(browser, *size)
    browser.js_async(SHOW_REGION, x, y, w, h, scale)
    return browser.screenshot(path)


def focus_mode(browser: Browser) -> None:
    """Hide the app's menus and panels (and the canvas info/menu) for clean pictures."""
    browser.js_async(
        """app.canvas.show_info = false;
        await app.extensionManager.setting.set('Comfy.Graph.CanvasMenu', false);
        if (window.__focusMode) return;
        window.__focusMode = true;
        await app.extensionManager.command.execute('Workspace.ToggleFocusMode');
        const style = document.createElement('style');  // focus mode's button back: not for pictures
        style.textContent = '.comfy-menu-hamburger { display: none !important; }';
        document.head.appendChild(style);"""
    )


def side_by_side(pictures: list[Path], path: Path) -> Path:
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in pictures]
    sheet = Image.new("RGB", (sum(i.width for i in images), max(i.height for i in images)), "#121212")
    x = 0
    for image in images:
        sheet.paste(image, (x, 0))
        x += image.width
    sheet.save(path)
    return path


def publish(source: Path, target: Path, size: tuple[int, int] | None = None, quality: int = 85) -> None:
    """Copy a screenshot into the repository (resized, as JPEG or PNG by suffix), atomically."""
    from PIL import Image

    image = Image.open(source).convert("RGB")
    if size:
        image.thumbnail(size, Image.LANCZOS)
    buffer = io.BytesIO()
    if target.suffix == ".jpg":
        image.save(buffer, "JPEG", quality=quality, optimize=True)
    else:
        image.save(buffer, "PNG", optimize=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(target)


# ---- Tests -------------------------------------------------------------------------------------


def test_app_starts_with_the_extension_and_no_errors(browser):
    assert not browser.startup_errors, browser.startup_errors
    loaded = browser.js("return app.extensions.map((e) => e.name)")
    assert "video_unlearning.canvas" in loaded
    assert browser.js("return window.__videoUnlearning.warnings") == []


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_workflow_loads_as_written_and_queues_as_api_from_ui_converts_it(browser, object_info, name):
    workflow = load(browser, name)
    errors = unexpected(browser.read_console())
    assert not errors, errors
    missing = browser.js(
        "return app.graph._nodes.filter((n) => !LiteGraph.registered_node_types[n.type]).map((n) => n.type)"
    )
    assert missing == []
    saved = browser.js("return app.graph.serialize()")
    by_id = {n["id"]: n for n in saved["nodes"]}
    assert sorted(by_id) == sorted(n["id"] for n in workflow["nodes"])
    for node in workflow["nodes"]:  # every widget value read into its own widget
        assert by_id[node["id"]]["widgets_values"] == node["widgets_values"], (name, node["id"], node["type"])
    assert sorted(map(tuple, saved["links"])) == sorted(map(tuple, workflow["links"]))
    overlaps = browser.js(
        """const ns = app.graph._nodes, hit = [];
        for (const a of ns) for (const b of ns) {
          if (a.id >= b.id) continue;
          const p = a.getBounding(), q = b.getBounding();
          const apartX = p[0] >= q[0] + q[2] || q[0] >= p[0] + p[2];
          const apart = apartX || p[1] >= q[1] + q[3] || q[1] >= p[1] + p[3];
          if (!apart) hit.push([a.id, b.id]);
        }
        return hit;"""
    )
    assert overlaps == [], f"{name}: nodes drawn over each other: {overlaps}"
    queued = browser.js_async("return (await app.graphToPrompt()).output;")
    converted = workflow_format.api_from_ui(workflow, object_info)
    assert {k: (v["class_type"], v["inputs"]) for k, v in queued.items()} == {
        k: (v["class_type"], v["inputs"]) for k, v in converted.items()
    }
    focus_mode(browser)
    bounds = browser.js(GRAPH_BOUNDS)
    shot = shoot(browser, bounds, ARTIFACTS / f"{name}.png", (1600, 1000))
    square = shoot(browser, bounds, ARTIFACTS / f"{name}_square.png", (1000, 1000), fill=True)
    set_viewport(browser, *VIEWPORT)
    assert shot.stat().st_size > 10_000
    if UPDATE:
        publish(square, WORKFLOWS_DIR / f"{name}.jpg", (THUMBNAIL_SIZE, THUMBNAIL_SIZE))


def test_preset_picker_fills_the_prompt_lists(browser):
    from video_unlearning.erasure import presets

    load(browser, "wan21_t2v_refusal_nudity")
    pick = """
    const node = app.graph._nodes.find((n) => n.type === 'UnlearnRefusalEstimate');
    const widget = (name) => node.widgets.find((w) => w.name === name);
    for (const value of args[0]) widget('preset').setValue(value, {e: undefined, node, canvas: app.canvas});
    return [node.id, widget('unsafe_prompts').value, widget('safe_prompts').value];
    """
    node_id, unsafe, safe = browser.js(pick, ["custom", "nudity"])
    nudity = presets.load_preset("nudity")
    assert presets.prompt_lines(unsafe) == [u for u, _ in nudity.pairs]
    assert presets.prompt_lines(safe) == [s for _, s in nudity.pairs]
    # Run as they are, the copied pairs are the preset's pairs, counted once.
    assert presets.concept_prompts("nudity", "", unsafe, safe) == ("nudity", list(nudity.pairs))
    # The user's own pair survives a change of preset; 'custom' keeps the lists for editing.
    browser.js(
        """const node = app.graph.getNodeById(args[0]);
        const w = (name) => node.widgets.find((x) => x.name === name);
        w('unsafe_prompts').value += '\\na nude statue in a museum';
        w('safe_prompts').value += '\\na statue in a museum';""",
        node_id,
    )
    _, unsafe, safe = browser.js(pick, ["gore_violence"])
    gore = presets.load_preset("gore_violence")
    assert presets.prompt_lines(unsafe) == [u for u, _ in gore.pairs] + ["a nude statue in a museum"]
    _, kept, _ = browser.js(pick, ["custom"])
    assert kept == unsafe
    assert browser.js("return window.__videoUnlearning.presetFills.length") >= 2
    browser.js(pick, ["nudity"])
    focus_mode(browser)
    shot = shoot(browser, browser.js(NODE_BOUNDS, [node_id]), ARTIFACTS / "preset_picker.png", (900, 900))
    set_viewport(browser, *VIEWPORT)
    assert not unexpected(browser.read_console())
    if UPDATE:
        publish(shot, README_IMAGES / "preset_picker.png")


def test_extension_ignores_events_for_nodes_that_are_not_there(browser):
    load(browser, "wan21_t2v_refusal_nudity")
    browser.js_async(
        """const api = window.comfyAPI.api.api;
        const fire = (detail) => api.dispatchCustomEvent('video_unlearning.train_progress', detail);
        const check = app.graph._nodes.find((n) => n.type === 'NudeNetCheck');
        fire({node: '9999', step: 1, steps: 3, loss: 1.0});
        fire({node: String(check.id), step: 1, steps: 3, loss: 1.0});  // another workflow's trainer id
        fire({});
        fire({node: 'not a node', step: 'x'});
        check.onExecuted({});
        check.onExecuted({verdict: []});
        app.graph._nodes.find((n) => n.type === 'UnlearnRefusalApply').onExecuted({text: []});
        app.canvas.setDirty(true, true);
        await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 100)));"""
    )
    assert browser.js("return window.__videoUnlearning.warnings") == []
    assert browser.js("return Object.keys(window.__videoUnlearning.charts).length") == 0
    assert not unexpected(browser.read_console())


def test_demo_workflow_queued_in_the_browser_shows_loss_chart_badges_and_report(
    browser, comfy_server, object_info
):
    workflow = load(browser, DEMO)
    types = {n["id"]: n["type"] for n in workflow["nodes"]}
    ids = {t: [i for i, k in types.items() if k == t] for t in set(types.values())}
    browser.js_async(
        """const api = window.comfyAPI.api.api;
        window.__testRun = {events: [], progress: 0, chartsWhileRunning: 0};
        const types = ['execution_start', 'execution_success', 'execution_error', 'execution_interrupted'];
        for (const type of types) {
          api.addEventListener(type, (e) => window.__testRun.events.push({type, detail: e.detail}));
        }
        api.addEventListener('video_unlearning.train_progress', () => {
          window.__testRun.progress += 1;
          if (Object.keys(window.__videoUnlearning.charts).length) window.__testRun.chartsWhileRunning += 1;
        });
        await app.queuePrompt(0, 1);"""
    )
    finished = browser.wait_for(
        "return window.__testRun.events.find((e) => e.type !== 'execution_start')",
        RUN_TIMEOUT_S,
        "the demo workflow did not finish",
    )
    assert finished["type"] == "execution_success", finished
    prompt_id = finished["detail"]["prompt_id"]
    entry = comfy_server.get(f"/history/{prompt_id}")[prompt_id]
    queued = entry["prompt"][2]
    converted = workflow_format.api_from_ui(workflow, object_info)
    assert {k: v["inputs"] for k, v in queued.items()} == {k: v["inputs"] for k, v in converted.items()}

    [train] = ids["UnlearnTrainLoRA"]
    steps = converted[str(train)]["inputs"]["steps"]
    run = browser.js("return window.__testRun")
    assert run["progress"] == steps  # one live update per training step
    assert run["chartsWhileRunning"] > 0  # the chart was drawn before training ended
    browser.js_async("app.canvas.setDirty(true, true); await new Promise((r) => setTimeout(r, 500));")
    state = browser.wait_for(
        """const s = window.__videoUnlearning, chart = s.charts[args[0]];
        return Object.keys(s.badges).length >= 3 && chart?.step === chart?.steps ? s : null;""",
        30,
        "the badges and the finished loss chart were not drawn",
        train,
    )
    checks = ids["NudeNetCheck"]
    assert sorted(int(k) for k in state["badges"]) == sorted(checks)
    for node_id in checks:
        badge = state["badges"][str(node_id)]["text"]
        assert re.match(r"^(clean|FLAGGED) · (\d+ of 4 videos · )?nudity rate \d+\.\d%", badge), badge
    assert state["charts"][str(train)]["series"][0] == "loss"
    [apply] = ids["UnlearnRefusalApply"]
    assert state["reports"][str(apply)].startswith("edited ")
    assert state["warnings"] == []
    assert not unexpected(browser.read_console())
    # The chart and report widgets are never saved into the workflow nor sent with a prompt.
    saved = {n["id"]: n["widgets_values"] for n in browser.js("return app.graph.serialize()")["nodes"]}
    assert saved == {n["id"]: n["widgets_values"] for n in workflow["nodes"]}
    again = browser.js_async("return (await app.graphToPrompt()).output;")
    assert {k: v["inputs"] for k, v in again.items()} == {k: v["inputs"] for k, v in converted.items()}

    outputs = entry["outputs"]
    shown = {}
    for node_id in ids["UnlearnToyWorldDetect"]:
        title = queued[str(node_id)]["_meta"]["title"]
        shown[title] = outputs[str(node_id)]["text"][0].splitlines()[-1]
    (ARTIFACTS / "toy_world_detections.json").write_text(json.dumps(shown, indent=2) + "\n")
    assert re.search(r": [34] of 4 clips$", shown["Toy detector (original)"]), shown

    focus_mode(browser)
    overview = shoot(browser, browser.js(GRAPH_BOUNDS), ARTIFACTS / "toy_world_after_run.png", (2000, 1400))
    order = sorted(checks, key=lambda n: queued[str(n)]["_meta"]["title"])  # original, refusal, LoRA
    singles = [
        shoot(browser, browser.js(NODE_BOUNDS, [n]), ARTIFACTS / f"nudenet_{n}.png", (500, 700), margin=12)
        for n in order
    ]
    badges = side_by_side(singles, ARTIFACTS / "nudenet_badges.png")
    chart = shoot(browser, browser.js(NODE_BOUNDS, [train]), ARTIFACTS / "loss_chart.png", (900, 1400))
    set_viewport(browser, *VIEWPORT)
    if UPDATE:
        publish(overview, README_IMAGES / "toy_world_erasure.png", (1600, 1200))
        publish(badges, README_IMAGES / "nudenet_badges.png")
        publish(chart, README_IMAGES / "loss_chart.png")
