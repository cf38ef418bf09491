// Video Unlearning: what the pack's nodes show on the canvas.
// - NudeNetCheck / NudeNetGate: a verdict badge (clean / flagged, nudity rate, worst label).
// - UnlearnTrainLoRA: the live loss curves and time left while it trains.
// - Nodes that return a text report (refusal edits, LoRA files): the report under the node.
// Only the frontend's extension API is used; a node type that is missing is simply not decorated.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

const PROGRESS_EVENT = "video_unlearning.train_progress";
const VERDICT_NODES = new Set(["NudeNetCheck", "NudeNetGate"]);
const TEXT_NODES = new Set([
  "UnlearnRefusalEstimate",
  "UnlearnRefusalApply",
  "UnlearnTrainLoRA",
  "UnlearnSaveLoRA",
  "UnlearnLoadLoRA",
]);
const PROGRESS_META = new Set(["node", "step", "steps", "elapsed_s", "eta_s"]);
const SERIES_COLOURS = ["#60a5fa", "#f87171", "#34d399", "#fbbf24", "#c084fc"];

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
  node.videoUnlearningExtra = height;
  const wanted = node.computeSize()[1];
  if (node.size[1] < wanted) node.setSize([node.size[0], wanted]);
  node.setDirtyCanvas(true, true);
}

function drawVerdict(node, ctx, verdict) {
  const flagged = Boolean(verdict.flagged);
  const rate = Number(verdict.nudity_rate ?? 0);
  const label = flagged ? "FLAGGED" : "clean";
  const worst = verdict.worst_label ? ` · worst ${verdict.worst_label}` : "";
  const text = `${label} · nudity rate ${(100 * rate).toFixed(1)}%${worst}`;
  const y = node.size[1] - 30;
  ctx.save();
  ctx.font = "bold 12px sans-serif";
  const width = Math.min(node.size[0] - 16, ctx.measureText(text).width + 20);
  roundRect(ctx, 8, y, width, 22, 6);
  ctx.fillStyle = flagged ? "#b91c1c" : "#15803d";
  ctx.fill();
  ctx.fillStyle = "#ffffff";
  ctx.fillText(text, 18, y + 15, width - 20);
  ctx.restore();
}

function drawLossChart(node, ctx, progress) {
  const h = 110;
  const x0 = 8;
  const y0 = node.size[1] - h - 6;
  const w = node.size[0] - 16;
  ctx.save();
  ctx.fillStyle = "#111827";
  roundRect(ctx, x0, y0, w, h, 6);
  ctx.fill();
  const names = Object.keys(progress.series);
  let lo = Infinity;
  let hi = -Infinity;
  for (const name of names) {
    for (const v of progress.series[name]) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  if (hi === lo) hi = lo + 1;
  const steps = Math.max(progress.steps, 2);
  names.forEach((name, i) => {
    const values = progress.series[name];
    ctx.strokeStyle = SERIES_COLOURS[i % SERIES_COLOURS.length];
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    values.forEach((v, step) => {
      const px = x0 + 4 + ((w - 8) * step) / (steps - 1);
      const py = y0 + 20 + (h - 28) * (1 - (v - lo) / (hi - lo));
      if (step === 0) ctx.moveTo(px, py);
      else ctx.lineTo(px, py);
    });
    ctx.stroke();
    ctx.fillStyle = ctx.strokeStyle;
    ctx.font = "10px sans-serif";
    ctx.fillText(`${name} ${values.at(-1)?.toPrecision(3) ?? ""}`, x0 + 6 + i * 90, y0 + 12);
  });
  ctx.fillStyle = "#e5e7eb";
  ctx.font = "10px sans-serif";
  const status = `step ${progress.step}/${progress.steps} · ${formatSeconds(progress.eta_s)} left`;
  ctx.fillText(status, x0 + w - ctx.measureText(status).width - 6, y0 + h - 6);
  ctx.restore();
}

// A read-only text box under the node with the report the node returned in ui.text.
function showReport(node, text) {
  let widget = node.widgets?.find((w) => w.name === "video_unlearning_report");
  if (!widget) {
    widget = ComfyWidgets.STRING(node, "video_unlearning_report", ["STRING", { multiline: true }], app).widget;
    widget.inputEl.readOnly = true;
    widget.inputEl.style.opacity = 0.85;
    widget.serialize = false; // a report, not a setting: never saved into the workflow's values
  }
  widget.value = text;
  node.setSize([Math.max(node.size[0], 360), node.computeSize()[1]]);
  node.setDirtyCanvas(true, true);
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

  nodeType.prototype.onExecuted = function (message) {
    onExecuted?.apply(this, arguments);
    if (VERDICT_NODES.has(name) && message?.verdict?.length) {
      this.videoUnlearningVerdict = message.verdict[0];
      reserve(this, 36);
    }
    if (TEXT_NODES.has(name) && message?.text?.length) showReport(this, message.text.join("\n"));
  };

  nodeType.prototype.onDrawForeground = function (ctx) {
    onDrawForeground?.apply(this, arguments);
    if (this.flags?.collapsed) return;
    if (this.videoUnlearningProgress) drawLossChart(this, ctx, this.videoUnlearningProgress);
    else if (this.videoUnlearningVerdict) drawVerdict(this, ctx, this.videoUnlearningVerdict);
  };
}

function onTrainProgress(event) {
  const data = event.detail ?? {};
  const node = app.graph?.getNodeById(Number(data.node));
  if (!node) return;
  if (!node.videoUnlearningProgress || data.step <= 1) {
    node.videoUnlearningProgress = { series: {}, step: 0, steps: data.steps };
    reserve(node, 122);
  }
  const progress = node.videoUnlearningProgress;
  for (const [key, value] of Object.entries(data)) {
    if (PROGRESS_META.has(key) || typeof value !== "number") continue;
    (progress.series[key] ??= []).push(value);
  }
  Object.assign(progress, { step: data.step, steps: data.steps, eta_s: data.eta_s });
  node.setDirtyCanvas(true, true);
}

app.registerExtension({
  name: "video_unlearning.canvas",
  async setup() {
    api.addEventListener(PROGRESS_EVENT, onTrainProgress);
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const name = nodeData?.name;
    if (VERDICT_NODES.has(name) || TEXT_NODES.has(name)) decorate(nodeType, name);
  },
});
