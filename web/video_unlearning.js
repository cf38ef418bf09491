// Video Unlearning: what the pack's nodes show on the canvas.
// - NudeNetCheck / NudeNetGate: a verdict badge (clean / flagged, nudity rate, worst label) after a run.
// - UnlearnTrainLoRA and UnlearnAttackPrompt: the live loss curves and time left while they run.
// - UnlearnRefusalEstimate: a preset picker; choosing a preset copies its prompt pairs into the
//   node's unsafe/safe prompt lists, where they can be read and edited.
// - Nodes that return a text report (refusal edits, training, LoRA files): the report under the node.
// Only the frontend's extension API is used (registerExtension, api events, node callbacks, DOM
// widgets), and every hook is guarded: a missing node, widget or server route leaves that node as it
// was. Everything is shown in DOM widgets (addDOMWidget), never drawn in onDrawForeground, so it
// looks the same in the classic canvas and in "Nodes 2.0" (Vue nodes, which never call
// onDrawForeground and mount a DOM widget's element into the node itself).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const PROGRESS_EVENT = "video_unlearning.train_progress";
const PRESETS_ROUTE = "/video_unlearning/presets";
const VERDICT_NODES = new Set(["NudeNetCheck", "NudeNetGate"]);
const TEXT_NODES = new Set([
  "UnlearnRefusalEstimate",
  "UnlearnRefusalApply",
  "UnlearnTrainLoRA",
  "UnlearnSaveLoRA",
  "UnlearnLoadLoRA",
  "UnlearnAttackPrompt",
]);
const PRESET_NODE = "UnlearnRefusalEstimate";
// Nodes that send PROGRESS_EVENT messages (the trainer and the prompt attack): a live loss chart.
const PROGRESS_NODES = new Set(["UnlearnTrainLoRA", "UnlearnAttackPrompt"]);
const PROGRESS_META = new Set(["node", "step", "steps", "elapsed_s", "eta_s"]);
const SERIES_COLOURS = ["#60a5fa", "#f87171", "#34d399", "#fbbf24", "#c084fc"];
const REPORT_WIDGET = "video_unlearning_report";
const CHART_WIDGET = "video_unlearning_loss_chart";
const BADGE_WIDGET = "video_unlearning_verdict";
// The widgets' types are the pack's own: Nodes 2.0 mounts the element of a DOM widget whose type it
// does not know as it is, but swaps known types (e.g. "customtext") for its own components.
const REPORT_TYPE = "video_unlearning_report";
const CHART_TYPE = "video_unlearning_chart";
const BADGE_TYPE = "video_unlearning_badge";
const CHART_HEIGHT = 110;
const BADGE_FONT = "bold 12px sans-serif";
const BADGE_LINE = 16; // px per line of the badge's text; it wraps onto at most 3 lines
const badgeHeight = (lines) => lines * BADGE_LINE + 8;
const WIDGET_MARGIN = 6;
const EMPTY_CLASS = "video-unlearning-empty";

// Elements the extension put on the page, by kind and node id: {element, describe()}.
const shown = { badges: new Map(), charts: new Map(), reports: new Map() };
const pendingFills = []; // preset fills not yet seen on the page: {node, preset, unsafe, safe}
const confirmedFills = [];

// Whether an element is on the page now: attached, laid out, not hidden, inside the window.
function isOnScreen(element) {
  if (!element?.isConnected) return false;
  const rect = element.getBoundingClientRect();
  if (rect.width < 1 || rect.height < 1) return false;
  if (rect.right <= 0 || rect.bottom <= 0 || rect.left >= innerWidth || rect.top >= innerHeight) return false;
  if (getComputedStyle(element).visibility === "hidden") return false;
  for (let e = element; e; e = e.parentElement) {
    if (Number(getComputedStyle(e).opacity) === 0) return false;
  }
  return true;
}

// Where an element is in the window, in page pixels: [x, y, width, height].
function box(element) {
  const r = element.getBoundingClientRect();
  return [r.left, r.top, r.width, r.height].map((v) => Math.round(v * 10) / 10);
}

function onScreenNow(kind) {
  const out = {};
  for (const [id, entry] of shown[kind]) {
    if (isOnScreen(entry.element)) out[id] = entry.describe();
  }
  return out;
}

// A preset fill counts once both prompt lists show its text in a visible text box: the node's own
// textarea in the classic canvas, the Vue node's in Nodes 2.0.
function confirmFills() {
  if (!pendingFills.length) return;
  const boxes = [...document.querySelectorAll("textarea")].filter(isOnScreen).map((t) => t.value);
  for (let i = pendingFills.length - 1; i >= 0; i--) {
    const fill = pendingFills[i];
    if (boxes.includes(fill.unsafe) && boxes.includes(fill.safe)) {
      confirmedFills.push({ node: fill.node, preset: fill.preset });
      pendingFills.splice(i, 1);
    }
  }
}

function watchFills(framesLeft = 120) {
  confirmFills();
  if (pendingFills.length && framesLeft > 0) requestAnimationFrame(() => watchFills(framesLeft - 1));
}

// What the extension shows, by node id: read by the pack's browser test, handy when debugging in the
// console; never read back by the extension itself. badges, charts and reports are read from the
// page when asked: a node's entry is there only while its element is on screen (attached, laid
// out, visible, in the window), with the text it shows (badges, reports) or what was last painted
// into it (charts), and where it is (box). presetFills lists the fills whose text was seen in
// visible text boxes.
const state = {
  presetsLoaded: false,
  warnings: [],
};
Object.defineProperties(state, {
  badges: { enumerable: true, get: () => onScreenNow("badges") },
  charts: { enumerable: true, get: () => onScreenNow("charts") },
  reports: { enumerable: true, get: () => onScreenNow("reports") },
  presetFills: {
    enumerable: true,
    get: () => {
      confirmFills();
      return confirmedFills.slice();
    },
  },
});
window.__videoUnlearning = state;

// Run fn; on an exception, note it and carry on: the canvas must never break because of us.
function guarded(what, fn) {
  return function (...args) {
    try {
      return fn.apply(this, args);
    } catch (error) {
      state.warnings.push(`${what}: ${error}`);
      console.warn(`[video_unlearning] ${what} failed:`, error);
      return undefined;
    }
  };
}

function formatSeconds(s) {
  if (!Number.isFinite(s)) return "?";
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m ${Math.round(s % 60)}s` : `${Math.round(s)}s`;
}

function roundRect(ctx, x, y, w, h, r) {
  ctx.beginPath();
  ctx.moveTo(x + r, y);
  ctx.arcTo(x + w, y, x + w, y + h, r);
  ctx.arcTo(x + w, y + h, x, y + h, r);
  ctx.arcTo(x, y + h, x, y, r);
  ctx.arcTo(x, y, x + w, y, r);
  ctx.closePath();
}

// A DOM widget of ours (never saved with the workflow nor sent with a prompt), made once per node,
// when the node is made (nodeCreated): Nodes 2.0 of frontend 1.32.9 keeps a copy of a node's widget
// list once any widget changes, and never shows a widget added after that. It stays hidden until it
// has something to show (reveal): the classic canvas gives a hidden widget no room; in Nodes 2.0
// its element is not displayed.
function ownWidget(node, name, type, makeElement, options) {
  const existing = node.widgets?.find((w) => w.name === name);
  if (existing) return existing;
  if (typeof node.addDOMWidget !== "function") return null;
  const element = makeElement();
  element.classList.add(EMPTY_CLASS);
  element.style.display = "none";
  let widget = null;
  // Empty, it asks for no room (the classic canvas lays out hidden widgets too).
  const room = (height) => () => (!widget || widget.hidden ? 0 : height());
  widget = node.addDOMWidget(name, type, element, {
    serialize: false,
    hideOnZoom: false,
    margin: WIDGET_MARGIN,
    getValue: () => "",
    setValue: () => {},
    ...options,
    getMinHeight: room(options.getMinHeight),
    getMaxHeight: room(options.getMaxHeight),
  });
  widget.serialize = false;
  widget.hidden = true;
  widget.videoUnlearningElement = element;
  return widget;
}

function reveal(widget, display = "block") {
  const element = widget.videoUnlearningElement;
  if (!widget.hidden && !element.classList.contains(EMPTY_CLASS)) return;
  widget.hidden = false;
  element.classList.remove(EMPTY_CLASS);
  element.style.display = display;
}

// Nodes 2.0 draws a row for every widget: none for ours while they are empty.
function addStyles() {
  if (document.getElementById("video-unlearning-styles")) return;
  const style = document.createElement("style");
  style.id = "video-unlearning-styles";
  style.textContent = `.lg-node-widget:has(.${EMPTY_CLASS}) { display: none; }`;
  document.head.appendChild(style);
}

// Grow the node so the new widget fits: at least minWidth wide; in the classic canvas also as tall
// as its widgets need (Vue nodes, Nodes 2.0, grow to their content themselves).
function fitNode(node, minWidth = 360) {
  const width = Math.max(node.size[0], minWidth);
  const height = window.LiteGraph?.vueNodesMode
    ? node.size[1]
    : Math.max(node.size[1], (node.computeSize?.() ?? node.size)[1]);
  if (width !== node.size[0] || height !== node.size[1]) node.setSize?.([width, height]);
  node.setDirtyCanvas?.(true, true);
}

let measureContext = null;
function textWidth(text, font) {
  measureContext ??= document.createElement("canvas").getContext("2d");
  if (!measureContext) return 0;
  measureContext.font = font;
  return measureContext.measureText(text).width;
}

function verdictText(verdict) {
  const flagged = Boolean(verdict.flagged);
  const rate = Number(verdict.nudity_rate ?? 0);
  const parts = [flagged ? "FLAGGED" : "clean"];
  const videos = Number(verdict.videos ?? 1);
  if (videos > 1) parts.push(`${verdict.flagged_videos?.length ?? 0} of ${videos} videos`);
  parts.push(`nudity rate ${(100 * rate).toFixed(1)}%`);
  if (verdict.worst_label) parts.push(`worst ${verdict.worst_label} ${Number(verdict.max_score ?? 0).toFixed(2)}`);
  if (verdict.action && verdict.action !== "passed") parts.push(verdict.action);
  return parts.join(" · ");
}

// The verdict badge: a coloured pill under the node's widgets, its text wrapped to the node's width
// (the classic canvas gives a DOM widget a fixed height: the lines are counted from the text's width).
function badgeWidget(node) {
  return ownWidget(
    node,
    BADGE_WIDGET,
    BADGE_TYPE,
    () => {
      const badge = document.createElement("div");
      badge.className = "video-unlearning-badge";
      Object.assign(badge.style, {
        boxSizing: "border-box",
        minHeight: `${badgeHeight(1)}px`,
        padding: "4px 10px",
        borderRadius: "6px",
        color: "#ffffff",
        font: BADGE_FONT,
        lineHeight: `${BADGE_LINE}px`,
        overflow: "hidden",
      });
      return badge;
    },
    {
      getMinHeight: () => badgeHeight(node.videoUnlearningBadgeLines ?? 1) + 2 * WIDGET_MARGIN,
      getMaxHeight: () => badgeHeight(node.videoUnlearningBadgeLines ?? 1) + 2 * WIDGET_MARGIN,
    },
  );
}

function showVerdict(node, verdict) {
  const widget = badgeWidget(node);
  const badge = widget?.videoUnlearningElement;
  if (!badge) return;
  reveal(widget);
  const flagged = Boolean(verdict.flagged);
  badge.textContent = verdictText(verdict);
  badge.title = badge.textContent;
  badge.dataset.flagged = String(flagged);
  badge.style.background = flagged ? "#b91c1c" : "#15803d";
  shown.badges.set(String(node.id), {
    element: badge,
    describe: () => ({ text: badge.textContent, flagged: badge.dataset.flagged === "true", box: box(badge) }),
  });
  fitNode(node, 320);
  const room = Math.max(node.size[0] - 2 * WIDGET_MARGIN - 20, 60);
  const lines = Math.ceil((1.1 * textWidth(badge.textContent, BADGE_FONT)) / room);
  node.videoUnlearningBadgeLines = Math.min(Math.max(lines, 1), 3);
  fitNode(node, 320);
}

function drawLossChart(ctx, w, h, progress) {
  ctx.save();
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#111827";
  roundRect(ctx, 0, 0, w, h, 6);
  ctx.fill();
  const names = Object.keys(progress.series);
  let lo = Infinity;
  let hi = -Infinity;
  for (const name of names) {
    for (const v of progress.series[name]) {
      if (!Number.isFinite(v)) continue;
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  if (!(hi > lo)) hi = lo + 1;
  const steps = Math.max(progress.steps || 0, 2);
  names.forEach((name, i) => {
    const values = progress.series[name];
    ctx.strokeStyle = SERIES_COLOURS[i % SERIES_COLOURS.length];
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    values.forEach((v, step) => {
      const px = 4 + ((w - 8) * step) / (steps - 1);
      const py = 20 + (h - 34) * (1 - (v - lo) / (hi - lo));
      if (step === 0) ctx.moveTo(px, py);
      else ctx.lineTo(px, py);
    });
    ctx.stroke();
    ctx.fillStyle = ctx.strokeStyle;
    ctx.font = "10px sans-serif";
    ctx.fillText(`${name} ${values.at(-1)?.toPrecision(3) ?? ""}`, 6 + i * 100, 12);
  });
  ctx.fillStyle = "#e5e7eb";
  ctx.font = "10px sans-serif";
  const left = progress.step >= progress.steps ? "done" : `${formatSeconds(progress.eta_s)} left`;
  const status = `step ${progress.step}/${progress.steps} · ${left}`;
  ctx.fillText(status, w - ctx.measureText(status).width - 6, h - 5);
  ctx.restore();
}

// The loss chart: a canvas in its own fixed-height widget.
function chartWidget(node) {
  return ownWidget(
    node,
    CHART_WIDGET,
    CHART_TYPE,
    () => {
      const canvas = document.createElement("canvas");
      canvas.className = "video-unlearning-chart";
      Object.assign(canvas.style, {
        width: "100%",
        height: `${CHART_HEIGHT}px`,
        minHeight: `${CHART_HEIGHT}px`,
      });
      return canvas;
    },
    { getMinHeight: () => CHART_HEIGHT + 2 * WIDGET_MARGIN, getMaxHeight: () => CHART_HEIGHT + 2 * WIDGET_MARGIN },
  );
}

function paintChart(node) {
  const progress = node.videoUnlearningProgress;
  const widget = chartWidget(node);
  const canvas = widget?.videoUnlearningElement;
  if (!progress || !canvas) return;
  if (widget.hidden) {
    reveal(widget);
    fitNode(node);
  }
  const width = Math.max(canvas.clientWidth || node.size[0] - 2 * WIDGET_MARGIN, 120);
  canvas.width = width;
  canvas.height = CHART_HEIGHT;
  drawLossChart(canvas.getContext("2d"), width, CHART_HEIGHT, progress);
  const painted = { step: progress.step, steps: progress.steps, series: Object.keys(progress.series) };
  shown.charts.set(String(node.id), { element: canvas, describe: () => ({ ...painted, box: box(canvas) }) });
}

// A read-only text box under the node with the report the node returned in ui.text.
function reportWidget(node) {
  return ownWidget(
    node,
    REPORT_WIDGET,
    REPORT_TYPE,
    () => {
      const box = document.createElement("textarea");
      box.readOnly = true;
      box.className = "comfy-multiline-input video-unlearning-report";
      Object.assign(box.style, { opacity: "0.85", minHeight: "60px", boxSizing: "border-box", resize: "none" });
      return box;
    },
    { getMinHeight: () => 60, getMaxHeight: () => 180 },
  );
}

function showReport(node, text) {
  const widget = reportWidget(node);
  const box = widget?.videoUnlearningElement;
  if (!box) return;
  reveal(widget);
  box.value = text;
  box.rows = Math.min(Math.max(text.split("\n").length, 3), 10); // Vue nodes: the box's own height
  shown.reports.set(String(node.id), { element: box, describe: () => box.value });
  fitNode(node);
}

function decorate(nodeType, name) {
  const onExecuted = nodeType.prototype.onExecuted;
  const handleExecuted = guarded(`${name}.onExecuted`, function (message) {
    if (VERDICT_NODES.has(name) && message?.verdict?.length) showVerdict(this, message.verdict[0]);
    if (TEXT_NODES.has(name) && message?.text?.length) showReport(this, message.text.join("\n"));
  });
  nodeType.prototype.onExecuted = function (message) {
    const result = onExecuted?.apply(this, arguments);
    handleExecuted.call(this, message);
    return result;
  };
}

const onTrainProgress = guarded("train progress", (event) => {
  const data = event?.detail ?? {};
  const node = app.graph?.getNodeById?.(Number(data.node));
  // Another workflow may be open in the canvas now: its node with this id may be another node.
  if (!node || !PROGRESS_NODES.has(node.type) || !Number.isFinite(data.step)) return;
  if (!node.videoUnlearningProgress || data.step <= 1) {
    node.videoUnlearningProgress = { series: {}, step: 0, steps: data.steps };
  }
  const progress = node.videoUnlearningProgress;
  for (const [key, value] of Object.entries(data)) {
    if (PROGRESS_META.has(key) || typeof value !== "number") continue;
    (progress.series[key] ??= []).push(value);
  }
  Object.assign(progress, { step: data.step, steps: data.steps, eta_s: data.eta_s });
  paintChart(node);
  node.setDirtyCanvas?.(true, true);
});

// ---- Preset picker ---------------------------------------------------------------------------

let presetCatalogue = null; // {custom, name_field, presets: {name: {label, description, pairs, needs_name}}}

async function loadPresets() {
  try {
    const response = await api.fetchApi(PRESETS_ROUTE);
    if (response.ok) presetCatalogue = await response.json();
    state.presetsLoaded = Boolean(presetCatalogue);
  } catch (error) {
    console.warn("[video_unlearning] no preset list from the server; the preset picker is off:", error);
  }
}

const isComment = (line) => line.trim().startsWith("#");
const promptLines = (text) => String(text ?? "").split("\n").map((l) => l.trim()).filter((l) => l && !isComment(l));

// The user's own pairs in the lists: every pair that is not one of a preset's.
function ownPairs(unsafeText, safeText) {
  const unsafe = promptLines(unsafeText);
  const safe = promptLines(safeText);
  const known = new Set();
  for (const preset of Object.values(presetCatalogue?.presets ?? {})) {
    for (const [u, s] of preset.pairs) known.add(`${u}\u0000${s}`);
  }
  if (unsafe.length !== safe.length) {
    // Mid-edit: keep every line that is not a preset's, list by list.
    const knownUnsafe = new Set([...known].map((k) => k.split("\u0000")[0]));
    const knownSafe = new Set([...known].map((k) => k.split("\u0000")[1]));
    return [unsafe.filter((l) => !knownUnsafe.has(l)), safe.filter((l) => !knownSafe.has(l))];
  }
  const keep = unsafe.map((u, i) => [u, safe[i]]).filter(([u, s]) => !known.has(`${u}\u0000${s}`));
  return [keep.map(([u]) => u), keep.map(([, s]) => s)];
}

function presetHeader(name, preset, unsafeSide) {
  const lines = unsafeSide
    ? [
        `# Preset '${name}': its ${preset.pairs.length} pairs, used while the preset is '${name}'.`,
        "# Lines you add are extra pairs. To edit these, choose preset 'custom'. # lines are ignored.",
      ]
    : [`# Preset '${name}': the same prompts without the concept, line for line.`];
  if (preset.needs_name && unsafeSide) {
    lines.push(`# ${presetCatalogue.name_field} is replaced by the 'name' field: fill it in.`);
  }
  return lines;
}

function fillFromPreset(node, presetName) {
  const preset = presetCatalogue?.presets?.[presetName];
  if (!preset) return; // "custom", or no catalogue: the lists stay as they are
  const widget = (name) => node.widgets?.find((w) => w.name === name);
  const unsafe = widget("unsafe_prompts");
  const safe = widget("safe_prompts");
  if (!unsafe || !safe) return;
  const [ownUnsafe, ownSafe] = ownPairs(unsafe.value, safe.value);
  const text = (header, prompts, own) => [...header, ...prompts, ...own].join("\n");
  unsafe.value = text(presetHeader(presetName, preset, true), preset.pairs.map(([u]) => u), ownUnsafe);
  safe.value = text(presetHeader(presetName, preset, false), preset.pairs.map(([, s]) => s), ownSafe);
  const nameWidget = widget("name");
  if (nameWidget?.inputEl && preset.needs_name) nameWidget.inputEl.placeholder = "the person's name";
  pendingFills.push({ node: node.id, preset: presetName, unsafe: unsafe.value, safe: safe.value });
  watchFills();
  node.graph?.setDirtyCanvas?.(true, true);
  node.graph?.change?.();
}

function addPresetPicker(node) {
  const presetWidget = node.widgets?.find((w) => w.name === "preset");
  if (!presetWidget || presetWidget.videoUnlearningPicker) return;
  presetWidget.videoUnlearningPicker = true;
  const callback = presetWidget.callback;
  const fill = guarded("preset picker", (value) => fillFromPreset(node, value));
  // Called when the user picks a value (never when a saved workflow is loaded).
  presetWidget.callback = function (value, ...rest) {
    const result = callback?.apply(this, [value, ...rest]);
    fill(value ?? presetWidget.value);
    return result;
  };
}

app.registerExtension({
  name: "video_unlearning.canvas",
  async setup() {
    api.addEventListener(PROGRESS_EVENT, onTrainProgress);
    loadPresets(); // not awaited: the app starts without waiting for it
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    guarded("beforeRegisterNodeDef", () => {
      const name = nodeData?.name;
      if (VERDICT_NODES.has(name) || TEXT_NODES.has(name)) decorate(nodeType, name);
    })();
  },
  nodeCreated: guarded("nodeCreated", (node) => {
    const name = node?.comfyClass ?? node?.type;
    if (name === PRESET_NODE) addPresetPicker(node);
    addStyles();
    if (VERDICT_NODES.has(name)) badgeWidget(node);
    if (PROGRESS_NODES.has(name)) chartWidget(node);
    if (TEXT_NODES.has(name)) reportWidget(node);
  }),
});
