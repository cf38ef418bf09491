// Video Unlearning: what the pack's nodes show on the canvas.
// - NudeNetCheck / NudeNetGate: a verdict badge (clean / flagged, nudity rate, worst label) after a run.
// - UnlearnTrainLoRA: the live loss curves and time left while it trains.
// - UnlearnRefusalEstimate: a preset picker; choosing a preset copies its prompt pairs into the
//   node's unsafe/safe prompt lists, where they can be read and edited.
// - Nodes that return a text report (refusal edits, training, LoRA files): the report under the node.
// Only the frontend's extension API is used (registerExtension, api events, node callbacks), and
// every hook is guarded: a missing node, widget or server route leaves that node as it was.
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
]);
const PRESET_NODE = "UnlearnRefusalEstimate";
const TRAIN_NODE = "UnlearnTrainLoRA";
const PROGRESS_META = new Set(["node", "step", "steps", "elapsed_s", "eta_s"]);
const SERIES_COLOURS = ["#60a5fa", "#f87171", "#34d399", "#fbbf24", "#c084fc"];
const REPORT_WIDGET = "video_unlearning_report";
const CHART_WIDGET = "video_unlearning_loss_chart";
const CHART_HEIGHT = 110;
const BADGE_HEIGHT = 22;

// What the extension has drawn and done, by node id: read by the pack's browser test, handy when
// debugging in the console. Never read back by the extension itself.
const state = {
  badges: {},
  charts: {},
  reports: {},
  presetFills: [],
  presetsLoaded: false,
  warnings: [],
};
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

// Space reserved below the widgets for what we draw, so nothing overlaps them.
function reserve(node, height) {
  if (node.videoUnlearningExtra === height) return;
  node.videoUnlearningExtra = height;
  const wanted = node.computeSize?.()[1];
  if (wanted && node.size[1] < wanted) node.setSize([node.size[0], wanted]);
  node.setDirtyCanvas?.(true, true);
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

function drawVerdict(node, ctx, verdict) {
  const flagged = Boolean(verdict.flagged);
  const text = verdictText(verdict);
  const y = node.size[1] - BADGE_HEIGHT - 8;
  ctx.save();
  ctx.font = "bold 12px sans-serif";
  const width = Math.min(node.size[0] - 16, ctx.measureText(text).width + 20);
  roundRect(ctx, 8, y, width, BADGE_HEIGHT, 6);
  ctx.fillStyle = flagged ? "#b91c1c" : "#15803d";
  ctx.fill();
  ctx.fillStyle = "#ffffff";
  ctx.fillText(text, 18, y + 15, width - 20);
  ctx.restore();
  state.badges[node.id] = { text, flagged };
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

// The loss chart: a canvas element in its own fixed-height widget (never saved with the workflow).
function chartWidget(node) {
  const existing = node.widgets?.find((w) => w.name === CHART_WIDGET);
  if (existing) return existing;
  if (typeof node.addDOMWidget !== "function") return null;
  const canvas = document.createElement("canvas");
  canvas.style.width = "100%";
  canvas.style.height = `${CHART_HEIGHT}px`;
  const widget = node.addDOMWidget(CHART_WIDGET, "video_unlearning_chart", canvas, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => CHART_HEIGHT + 6,
    getMaxHeight: () => CHART_HEIGHT + 6,
  });
  widget.serialize = false;
  widget.chartCanvas = canvas;
  node.setSize([Math.max(node.size[0], 360), Math.max(node.size[1], node.computeSize()[1])]);
  return widget;
}

function paintChart(node) {
  const progress = node.videoUnlearningProgress;
  const canvas = chartWidget(node)?.chartCanvas;
  if (!progress || !canvas) return;
  const width = Math.max(canvas.clientWidth || node.size[0] - 20, 120);
  canvas.width = width;
  canvas.height = CHART_HEIGHT;
  drawLossChart(canvas.getContext("2d"), width, CHART_HEIGHT, progress);
  state.charts[node.id] = { step: progress.step, steps: progress.steps, series: Object.keys(progress.series) };
}

// A read-only text box under the node with the report the node returned in ui.text.
function showReport(node, text) {
  let widget = node.widgets?.find((w) => w.name === REPORT_WIDGET);
  if (!widget) {
    if (typeof node.addDOMWidget !== "function") return;
    const box = document.createElement("textarea");
    box.readOnly = true;
    box.className = "comfy-multiline-input";
    box.style.opacity = "0.85";
    widget = node.addDOMWidget(REPORT_WIDGET, "customtext", box, {
      getValue: () => box.value,
      setValue: (v) => {
        box.value = v;
      },
      serialize: false, // a report, not a setting: never saved into the workflow's values
      getMinHeight: () => 60,
      getMaxHeight: () => 180,
    });
    widget.serialize = false;
  }
  widget.value = text;
  node.setSize([Math.max(node.size[0], 360), Math.max(node.size[1], node.computeSize()[1])]);
  node.setDirtyCanvas?.(true, true);
  state.reports[node.id] = text;
}

function addExtraSpace(nodeType) {
  const computeSize = nodeType.prototype.computeSize;
  nodeType.prototype.computeSize = function (...args) {
    const size = computeSize.apply(this, args);
    size[1] += this.videoUnlearningExtra ?? 0;
    return size;
  };
}

function decorate(nodeType, name) {
  const onExecuted = nodeType.prototype.onExecuted;
  const onDrawForeground = nodeType.prototype.onDrawForeground;
  addExtraSpace(nodeType);

  const handleExecuted = guarded(`${name}.onExecuted`, function (message) {
    if (VERDICT_NODES.has(name) && message?.verdict?.length) {
      this.videoUnlearningVerdict = message.verdict[0];
      reserve(this, BADGE_HEIGHT + 14);
    }
    if (TEXT_NODES.has(name) && message?.text?.length) showReport(this, message.text.join("\n"));
  });
  nodeType.prototype.onExecuted = function (message) {
    const result = onExecuted?.apply(this, arguments);
    handleExecuted.call(this, message);
    return result;
  };

  const draw = guarded(`${name}.draw`, function (ctx) {
    if (this.flags?.collapsed) return;
    if (this.videoUnlearningVerdict) drawVerdict(this, ctx, this.videoUnlearningVerdict);
  });
  nodeType.prototype.onDrawForeground = function (ctx) {
    const result = onDrawForeground?.apply(this, arguments);
    draw.call(this, ctx);
    return result;
  };
}

const onTrainProgress = guarded("train progress", (event) => {
  const data = event?.detail ?? {};
  const node = app.graph?.getNodeById?.(Number(data.node));
  // Another workflow may be open in the canvas now: its node with this id is not the trainer.
  if (!node || node.type !== TRAIN_NODE || !Number.isFinite(data.step)) return;
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
  state.presetFills.push({ node: node.id, preset: presetName });
  node.graph?.setDirtyCanvas?.(true, true);
  app.graph?.change?.();
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
    if (node?.comfyClass === PRESET_NODE || node?.type === PRESET_NODE) addPresetPicker(node);
  }),
});
