"""The pack in a real browser: headless Chromium (Debian's package) on the real ComfyUI frontend
served by the test host.

Shows that each example workflow loads without console errors, with every node type, link and widget
value as the file has them, and that the frontend's own conversion of it (what Queue sends) equals
``workflow_format.api_from_ui``; that the preset picker fills the prompt lists; that the extension
survives events for nodes that are not there; and that queuing the toy-world demo shows the live
loss chart on UnlearnTrainLoRA, the verdict badges on NudeNetCheck and the edit report.

Every test runs in both of the frontend's node renderers: the classic canvas and "Nodes 2.0" (Vue
nodes, setting ``Comfy.VueNodes.Enabled``; skipped on a frontend without it), each in a fresh page.
What the extension shows is checked from the page: ``window.__videoUnlearning`` lists a badge,
chart or report only while its element is on screen. The demo runs as shipped in the classic
canvas; in Nodes 2.0 it runs with the trainer turned down (``QUICK_TRAINER``): ComfyUI's cache
keeps the branches the classic run computed (it sends its output nodes' results again: the NudeNet
verdicts), and the trainer and the LoRA branch run again, so the chart is drawn live in that mode too.

Screenshots go to tests/artifacts/browser/, named ``comfyui-<version>_frontend-<version>_<mode>_*``.
With VIDEO_UNLEARNING_UPDATE_SCREENSHOTS=1 the classic run also writes the template-browser
thumbnails (workflows/<name>.jpg) and the README's pictures (workflows/screenshots/), atomically.
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
from pathlib import Path

import pytest
import workflow_runs
from browser_session import SETTINGS, Browser, ConsoleEntry, chromium_paths

import build_workflows
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
NODES2_SETTING = "Comfy.VueNodes.Enabled"
MODES = ["classic", "nodes2"]
# The trainer's settings for the demo's second run (Nodes 2.0): a few steps on one short clip.
QUICK_TRAINER = {"steps": 4, "sampled_clips": 1, "sampling_steps": 4}
# The nodes whose text report the extension shows under the node.
REPORT_NODES = {
    "UnlearnRefusalEstimate",
    "UnlearnRefusalApply",
    "UnlearnTrainLoRA",
    "UnlearnSaveLoRA",
    "UnlearnLoadLoRA",
}
# Frontends whose Nodes 2.0 puts nodes of the shipped workflows (laid out for the classic canvas)
# over each other by itself: 1.32.9 draws its Vue nodes much larger than the classic canvas, and its
# Comfy.VueNodes.AutoScaleLayout moves the nodes apart only on some loads and never the groups
# (toy_world_erasure loaded after another workflow overlaps, alone it does not); with that setting
# off the nodes overlap at the file's places. Frontend 1.49.6 keeps every shipped workflow apart.
NODES2_OVERLAPPING_FRONTENDS = {"1.32.9"}
BADGE_COLOURS = {False: (0x15, 0x80, 0x3D), True: (0xB9, 0x1C, 0x1C)}  # clean, flagged

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
# Logged by the frontend itself while it starts, also with no custom node installed at all (ComfyUI
# started with an empty custom_nodes/, same page, same settings): allowed only before the first
# workflow is loaded, and only when the message does not name the pack.
STARTUP_FRONTEND_BUGS = [
    # Frontend 1.32.9: its settings store (useRenderModeSetting).
    re.compile(r"TypeError: Cannot read properties of undefined \(reading 'id'\)\s+at onChange"),
    # Frontend 1.49.6: the getter app.rootGraph logs this when read before the graph exists; the
    # read is the frontend's own appModeStore (src/stores/appModeStore.ts:226,
    # `useEventListener(() => app.rootGraph?.events, 'configured', ...)`), found from the stack of
    # the console.error call mapped through the package's source maps. The pack never reads
    # app.rootGraph, and reads app.graph only when a training step arrives.
    re.compile(r'"ComfyApp graph accessed before initialization"$'),
]


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
        if starting and any(rule.search(entry.message) for rule in STARTUP_FRONTEND_BUGS):
            continue
        bad.append(str(entry))
    return bad


@pytest.fixture(scope="module")
def object_info(comfy_server):
    return comfy_server.get("/object_info")


@pytest.fixture(scope="module", params=MODES)
def browser(request, comfy_server):
    """A fresh page in one node renderer: the classic canvas, or Nodes 2.0 where the frontend has it."""
    mode = request.param
    comfyui = comfy_server.get("/system_stats")["system"]["comfyui_version"]
    session = Browser(comfy_server.url, *VIEWPORT)
    session.mode = mode
    session.run = f"comfyui-{comfyui}_{mode}"
    try:
        session.put_settings({**SETTINGS, NODES2_SETTING: mode == "nodes2"})
        session.open()
        session.wait_for("return window.__videoUnlearning?.presetsLoaded", 30, "the preset list did not load")
        session.startup_errors = unexpected(session.read_console(), starting=True)
        frontend, vue_nodes = session.js(
            "return [window.__COMFYUI_FRONTEND_VERSION__, LiteGraph.vueNodesMode]"
        )
        session.run = f"comfyui-{comfyui}_frontend-{frontend}_{mode}"
        session.frontend = frontend
        if mode == "nodes2" and vue_nodes is not True:
            pytest.skip(f"frontend {frontend} has no Nodes 2.0 (setting {NODES2_SETTING} changes nothing)")
        assert bool(vue_nodes) == (mode == "nodes2")
        yield session
    finally:
        session.read_console()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / f"{session.run}_console.log").write_text("\n".join(map(str, session.console)) + "\n")
        session.close()


def artifact(browser: Browser, name: str) -> Path:
    """tests/artifacts/browser/<run>_<name>: the run names the ComfyUI, the frontend and the mode."""
    return ARTIFACTS / f"{browser.run}_{name}"


def load(browser: Browser, name: str, workflow: dict | None = None) -> dict:
    workflow = workflow or workflow_runs.load(name)
    browser.load_workflow(workflow, name)
    browser.js_async("await new Promise((r) => setTimeout(r, 300));")
    # Nodes 2.0 lays the nodes out after loading (frontend 1.32.9 also spreads them apart): wait
    # until every node's place and size stay the same for half a second.
    browser.js_async(
        """const bounds = () => JSON.stringify(app.graph._nodes.map((n) => [n.id, ...n.getBounding()]));
        let last = bounds(), same = 0;
        for (let i = 0; i < 100 && same < 5; i++) {
          await new Promise((r) => setTimeout(r, 100));
          const now = bounds();
          same = now === last ? same + 1 : 0;
          last = now;
        }"""
    )
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


def show_all(browser: Browser) -> None:
    """Fit the whole graph into the window (what the extension shows is listed only while on screen)."""
    x, y, w, h = browser.js(GRAPH_BOUNDS)
    width, height = browser.js("return [innerWidth, innerHeight]")
    scale = min(width / (w + 48), height / (h + 48), 1.0)
    browser.js_async(SHOW_REGION, x - 24, y - 24, w + 48, h + 48, scale)


def badge_share(picture: Path, box: list[float], flagged: bool) -> float:
    """The share of the pixels in ``box`` (page pixels) of a screenshot that have the badge's colour."""
    from PIL import Image

    x, y, w, h = box
    want = BADGE_COLOURS[flagged]
    with Image.open(picture) as image:
        region = image.convert("RGB").crop((round(x), round(y), round(x + w), round(y + h)))
        pixels = list(
            region.get_flattened_data() if hasattr(region, "get_flattened_data") else region.getdata()
        )
    near = sum(all(abs(a - b) <= 24 for a, b in zip(p, want, strict=True)) for p in pixels)
    return near / max(len(pixels), 1)


def widget_value_names(node_info: dict) -> list[str]:
    """What each entry of a node's widgets_values is: a widget's name, or '<name>.control' for the
    control value the frontend stores after a seed."""
    specs = {**node_info["input"].get("required", {}), **node_info["input"].get("optional", {})}
    names = []
    for name in workflow_format.widget_names(node_info):
        names.append(name)
        if workflow_format.has_control_value(name, specs[name]):
            names.append(f"{name}.control")
    return names


def with_widget_values(workflow: dict, object_info: dict, node_id: int, values: dict) -> dict:
    """A copy of ``workflow`` with some widget values of one node changed."""
    workflow = copy.deepcopy(workflow)
    node = next(n for n in workflow["nodes"] if n["id"] == node_id)
    names = widget_value_names(object_info[node["type"]])
    assert len(names) == len(node["widgets_values"]), (node["type"], names)
    for name, value in values.items():
        node["widgets_values"][names.index(name)] = value
    return workflow


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
    missing = build_workflows.missing_nodes(name, object_info)
    if missing:
        pytest.skip(f"{name} needs nodes this ComfyUI lacks: {', '.join(missing)}")
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
    for node in workflow["nodes"]:  # every widget value read into its own widget (1.49.6 drops an empty list)
        assert by_id[node["id"]].get("widgets_values", []) == node["widgets_values"], (
            name,
            node["id"],
            node["type"],
        )
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
    if not (browser.mode == "nodes2" and browser.frontend in NODES2_OVERLAPPING_FRONTENDS):
        assert overlaps == [], f"{name}: nodes drawn over each other: {overlaps}"
    queued = browser.js_async("return (await app.graphToPrompt()).output;")
    converted = workflow_format.api_from_ui(workflow, object_info)
    assert {k: (v["class_type"], v["inputs"]) for k, v in queued.items()} == {
        k: (v["class_type"], v["inputs"]) for k, v in converted.items()
    }
    focus_mode(browser)
    bounds = browser.js(GRAPH_BOUNDS)
    shot = shoot(browser, bounds, artifact(browser, f"{name}.png"), (1600, 1000))
    square = shoot(browser, bounds, artifact(browser, f"{name}_square.png"), (1000, 1000), fill=True)
    set_viewport(browser, *VIEWPORT)
    assert shot.stat().st_size > 10_000
    if UPDATE and browser.mode == "classic":
        publish(square, WORKFLOWS_DIR / f"{name}.jpg", (THUMBNAIL_SIZE, THUMBNAIL_SIZE))


def test_preset_picker_fills_the_prompt_lists(browser):
    from video_unlearning.erasure import presets

    load(browser, "wan21_t2v_refusal_nudity")
    [estimate] = browser.js(
        "return app.graph._nodes.filter((n) => n.type === 'UnlearnRefusalEstimate').map((n) => n.id)"
    )
    # The node on screen at full size: a fill is confirmed once its text shows in the visible lists.
    set_viewport(browser, *VIEWPORT)
    x, y, w, h = browser.js(NODE_BOUNDS, [estimate])
    browser.js_async(SHOW_REGION, x - 80, y - 60, w + 160, h + 120, min(1.0, 900 / (h + 120)))
    fills = "window.__videoUnlearning.presetFills.map((f) => f.preset)"  # fills seen on the page
    pick = """
    const node = app.graph._nodes.find((n) => n.type === 'UnlearnRefusalEstimate');
    const widget = (name) => node.widgets.find((w) => w.name === name);
    for (const value of args[0]) widget('preset').setValue(value, {e: undefined, node, canvas: app.canvas});
    return [node.id, widget('unsafe_prompts').value, widget('safe_prompts').value];
    """
    node_id, unsafe, safe = browser.js(pick, ["custom", "nudity"])
    assert node_id == estimate
    browser.wait_for(f"return {fills}.includes('nudity')", 10, "the nudity preset's prompts were not shown")
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
    browser.wait_for(
        f"return {fills}.includes('gore_violence')", 10, "the gore_violence preset's prompts were not shown"
    )
    _, kept, _ = browser.js(pick, ["custom"])
    assert kept == unsafe
    browser.js(pick, ["nudity"])
    browser.wait_for(
        f"return {fills}.filter((p) => p === 'nudity').length >= 2", 10, "the refill was not shown"
    )
    focus_mode(browser)
    shot = shoot(
        browser, browser.js(NODE_BOUNDS, [node_id]), artifact(browser, "preset_picker.png"), (900, 900)
    )
    set_viewport(browser, *VIEWPORT)
    assert not unexpected(browser.read_console())
    if UPDATE and browser.mode == "classic":
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
    workflow = workflow_runs.load(DEMO)
    types = {n["id"]: n["type"] for n in workflow["nodes"]}
    ids = {t: [i for i, k in types.items() if k == t] for t in set(types.values())}
    [train] = ids["UnlearnTrainLoRA"]
    if browser.mode != "classic":  # the second run: see the module's docstring
        workflow = with_widget_values(workflow, object_info, train, QUICK_TRAINER)
    load(browser, DEMO, workflow)
    show_all(browser)  # the trainer on screen while it trains
    browser.js_async(
        """const api = window.comfyAPI.api.api;
        window.__testRun = {events: [], executed: [], progress: 0, onScreen: []};
        const types = ['execution_start', 'execution_success', 'execution_error', 'execution_interrupted'];
        for (const type of types) {
          api.addEventListener(type, (e) => window.__testRun.events.push({type, detail: e.detail}));
        }
        api.addEventListener('executed', (e) => window.__testRun.executed.push(e.detail));
        api.addEventListener('video_unlearning.train_progress', () => {
          window.__testRun.progress += 1;
          // What the next frame shows: the chart on screen, and the step it was drawn for.
          requestAnimationFrame(() => {
            const chart = window.__videoUnlearning.charts[args[0]];
            window.__testRun.onScreen.push(chart ? chart.step : null);
          });
        });
        await app.queuePrompt(0, 1);""",
        str(train),
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

    steps = converted[str(train)]["inputs"]["steps"]
    run = browser.js("return window.__testRun")
    assert run["progress"] == steps  # one live update per training step
    # The chart was on screen, drawn live: a frame showed it before the last step.
    assert any(step is not None and step < steps for step in run["onScreen"]), run["onScreen"]
    show_all(browser)
    state = browser.wait_for(
        """const s = window.__videoUnlearning, chart = s.charts[args[0]];
        return Object.keys(s.badges).length >= 3 && chart?.step === chart?.steps ? s : null;""",
        30,
        "the badges and the finished loss chart were not on screen",
        train,
    )
    checks = ids["NudeNetCheck"]
    assert sorted(int(k) for k in state["badges"]) == sorted(checks)
    for node_id in checks:
        badge = state["badges"][str(node_id)]["text"]
        assert re.match(r"^(clean|FLAGGED) · (\d+ of 4 videos · )?nudity rate \d+\.\d%", badge), badge
    assert state["charts"][str(train)]["series"][0] == "loss"
    assert state["charts"][str(train)]["steps"] == steps
    # Every report the server sent is on screen, as sent (in Nodes 2.0 the refusal nodes' results
    # are ComfyUI's cache: it sends the results of cached output nodes only, so no edit report).
    reports = {
        str(e["node"]): "\n".join(e["output"]["text"])
        for e in run["executed"]
        if (e["output"] or {}).get("text")
    }
    reports = {k: v for k, v in reports.items() if types[int(k)] in REPORT_NODES}
    [apply] = ids["UnlearnRefusalApply"]
    assert str(train) in reports and (browser.mode != "classic" or str(apply) in reports), sorted(reports)
    assert {k: state["reports"].get(k) for k in reports} == reports
    assert browser.mode != "classic" or state["reports"][str(apply)].startswith("edited ")
    assert state["warnings"] == []
    assert not unexpected(browser.read_console())
    # The chart and report widgets are never saved into the workflow nor sent with a prompt.
    saved = {
        n["id"]: n.get("widgets_values", []) for n in browser.js("return app.graph.serialize()")["nodes"]
    }
    assert saved == {n["id"]: n["widgets_values"] for n in workflow["nodes"]}
    again = browser.js_async("return (await app.graphToPrompt()).output;")
    assert {k: v["inputs"] for k, v in again.items()} == {k: v["inputs"] for k, v in converted.items()}

    outputs = entry["outputs"]
    shown = {}
    for node_id in ids["UnlearnToyWorldDetect"]:
        title = queued[str(node_id)]["_meta"]["title"]
        shown[title] = outputs[str(node_id)]["text"][0].splitlines()[-1]
    artifact(browser, "toy_world_detections.json").write_text(json.dumps(shown, indent=2) + "\n")
    assert re.search(r": [34] of 4 clips$", shown["Toy detector (original)"]), shown

    focus_mode(browser)
    overview = shoot(
        browser, browser.js(GRAPH_BOUNDS), artifact(browser, "toy_world_after_run.png"), (2000, 1400)
    )
    on_overview = browser.js("return window.__videoUnlearning")
    assert sorted(map(int, on_overview["badges"])) == sorted(checks), "the overview does not show every badge"
    order = sorted(checks, key=lambda n: queued[str(n)]["_meta"]["title"])  # original, refusal, LoRA
    singles = []
    for node_id in order:  # each picture shows the node's badge, in its colour
        picture = shoot(
            browser,
            browser.js(NODE_BOUNDS, [node_id]),
            artifact(browser, f"nudenet_{node_id}.png"),
            (500, 700),
            margin=12,
        )
        badge = browser.js("return window.__videoUnlearning.badges[args[0]]", str(node_id))
        assert badge, f"NudeNet node {node_id}: no badge on screen in its picture"
        share = badge_share(picture, badge["box"], badge["flagged"])
        assert share > 0.4, f"NudeNet node {node_id}: {share:.0%} of its badge's box has the badge's colour"
        singles.append(picture)
    badges = side_by_side(singles, artifact(browser, "nudenet_badges.png"))
    chart = shoot(browser, browser.js(NODE_BOUNDS, [train]), artifact(browser, "loss_chart.png"), (900, 1400))
    assert str(train) in browser.js("return window.__videoUnlearning.charts"), (
        "the chart is not in its picture"
    )
    set_viewport(browser, *VIEWPORT)
    if UPDATE and browser.mode == "classic":
        publish(overview, README_IMAGES / "toy_world_erasure.png", (1600, 1200))
        publish(badges, README_IMAGES / "nudenet_badges.png")
        publish(chart, README_IMAGES / "loss_chart.png")
