// The activation lab: every number on this page comes from the service's own API.
//   Plot:      f, f′ (and f″) over a grid, kinks marked, a keyboard/pointer readout, up to four
//              functions compared on one scale, and a profile card (POST profile).
//   Softmax:   vector functions as bars over four logits (POST activate).
//   Depth lab: a deep network simulated layer by layer (POST simulate).
// The state of every control is kept in the query string, so a view can be shared.
"use strict";

const POINTS = 401;
const MAX_COMPARE = 4;
const DEFAULT_LOGITS = [1.5, 1, 0.2, -1];
const LAB_DEFAULTS = { fn: "relu", depth: 20, width: 128, init: "he" };
const COLORS = { y: "#1f6fd1", dydx: "#e0761a", d2ydx2: "#2f9e44" };
const LABELS = { y: "f(x)", dydx: "f′(x)", d2ydx2: "f″(x)" };
const DASHES = { y: [], dydx: [], d2ydx2: [7, 4] };
// Compared functions: a colour and a dash pattern each, so they stay apart without colour too.
const PALETTE = [
  { color: "#1f6fd1", dash: [] },
  { color: "#c92a2a", dash: [9, 4] },
  { color: "#2b8a3e", dash: [2, 3] },
  { color: "#7048e8", dash: [11, 4, 2, 4] },
];
const USES = {
  hidden: "hidden layers",
  binary_output: "the output of a binary classifier (a probability)",
  multiclass_output: "the output of a multi-class classifier (a distribution over classes)",
  regression_output: "the output of a regression (any real number)",
  gating: "gates (LSTM/GRU gates, gated linear units)",
  sparse_coding: "sparse coding and denoising (shrinking small values to zero)",
  perceptron: "the historical perceptron (its zero derivative defeats gradient descent)",
  positive_output: "outputs that must be positive (rates, scales, variances)",
};

const $ = id => document.getElementById(id);
const form = $("controls");
const select = $("activation");
const paramsBox = $("params");
const canvas = $("plot");
const readout = $("readout");
const legend = $("legend");
const statusLine = $("status");
const apiKey = document.querySelector("input[name=api_key]");
const compareBox = $("compare-box");
const compareList = $("compare-list");
const compareAdd = $("compare-add");
const labForm = $("lab-controls");

let catalog = {};
let ready = false;
let view = "plot";
let compareWith = []; // the functions compared with the selected one (at their defaults)
let logits = DEFAULT_LOGITS.slice();
let temperature = 1;
let lastElementwise = "sigmoid";
let lastVector = "softmax";
let plot = null; // what the canvas shows: {x, curves, kinks, mode, ...}
let cursor = null; // index into plot.x of the readout, or null
const tickets = {};
const messages = {};

// -- small helpers -------------------------------------------------------------------------------

function ticket(kind) { tickets[kind] = (tickets[kind] || 0) + 1; return tickets[kind]; }
function current(kind, t) { return tickets[kind] === t; }

function say(key, text) {
  if (text) messages[key] = text; else delete messages[key];
  statusLine.textContent = Object.values(messages).join(" ");
}

function headers() {
  const h = { "content-type": "application/json" };
  const key = apiKey.value || localStorage.getItem("activation-api-key") || "";
  if (key) h.authorization = "Bearer " + key;
  return h;
}

class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

async function api(path, body) {
  const response = await fetch(path, body ? { method: "POST", headers: headers(), body: JSON.stringify(body) } : { headers: headers() });
  let data = null;
  try { data = await response.json(); } catch (err) { data = null; }
  if (!response.ok) {
    let message = (data && data.detail) || response.statusText || "request failed";
    if (response.status === 401) message = "The service wants an API key: type it in the API key field. (" + message + ")";
    throw new ApiError(message, response.status);
  }
  return data;
}

function element(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "style") node.style.cssText = v;
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function tex(target, source) {
  target.textContent = "";
  if (window.katex) {
    try { window.katex.render("\\displaystyle " + source, target, { throwOnError: false, displayMode: false }); return; } catch (err) { /* shown as text */ }
  }
  target.textContent = source;
}

// Numbers for people: a few significant digits, a true minus sign.
function fmt(v, digits = 4) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (!Number.isFinite(v)) return v > 0 ? "∞" : "−∞";
  if (v === 0) return "0";
  const a = Math.abs(v);
  const s = a >= 1e-4 && a < 1e6 ? String(Number(v.toPrecision(digits))) : v.toExponential(digits - 1).replace(/\.?0+e/, "e");
  return s.replace("-", "−");
}

const SUPERSCRIPT = { "-": "⁻", "0": "⁰", "1": "¹", "2": "²", "3": "³", "4": "⁴", "5": "⁵", "6": "⁶", "7": "⁷", "8": "⁸", "9": "⁹" };
function power10(k) { return "10" + String(k).split("").map(c => SUPERSCRIPT[c]).join(""); }

function entry(name) { return catalog[name === undefined ? select.value : name]; }
function elementwise() { return Object.values(catalog).filter(e => e.kind === "elementwise"); }

// -- nice numbers ---------------------------------------------------------------------------------

// A step of 1, 2 or 5 × 10^k giving about `target` intervals over `span`.
function niceStep(span, target) {
  const raw = span / Math.max(1, target);
  const k = Math.floor(Math.log10(raw));
  const f = raw / Math.pow(10, k);
  const m = f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10;
  return Number((m * Math.pow(10, k)).toPrecision(12));
}

// The smallest 1, 2 or 5 × 10^k at least v (v > 0).
function niceCeil(v) {
  const k = Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) { const c = Number((m * Math.pow(10, k)).toPrecision(12)); if (c >= v) return c; }
  return Math.pow(10, k + 1);
}

function niceTicks(lo, hi, target) {
  const step = niceStep(hi - lo, target);
  const ticks = [];
  const first = Math.ceil(lo / step - 1e-9), last = Math.floor(hi / step + 1e-9);
  for (let i = first; i <= last; i++) ticks.push(Number((i * step).toPrecision(12)) || 0);
  return { step, ticks };
}

function tickLabel(v, step) {
  if (v === 0) return "0";
  if (step >= 1e-4 && Math.abs(v) < 1e6) {
    const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
    return v.toFixed(decimals).replace("-", "−");
  }
  const [m, e] = v.toExponential().split("e");
  return (m === "1" ? "" : m.replace("-", "−") + "×") + power10(Number(e));
}

// -- canvas plumbing --------------------------------------------------------------------------------

function prepare(cv, aspect, minHeight, maxHeight) {
  const dpr = window.devicePixelRatio || 1;
  const width = cv.clientWidth || 320;
  const height = Math.round(Math.min(maxHeight, Math.max(minHeight, width * aspect)));
  cv.width = Math.round(width * dpr); cv.height = Math.round(height * dpr);
  cv.style.height = height + "px";
  const ctx = cv.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.fillStyle = "#ffffff"; ctx.fillRect(0, 0, width, height);
  return { ctx, width, height };
}

const FONT = "12px system-ui, -apple-system, 'Segoe UI', sans-serif";
const TITLE_FONT = "italic 13px system-ui, -apple-system, 'Segoe UI', sans-serif";

// Axes with gridlines, tick labels and titles; returns the plot box and the coordinate maps.
// x and y: {lo, hi, ticks, label(v), title, log}
function frame(ctx, width, height, x, y) {
  ctx.font = FONT;
  const yLabels = y.ticks.map(v => y.label(v));
  const labelWidth = Math.max(...yLabels.map(s => ctx.measureText(s).width), 10);
  const box = { l: Math.ceil(labelWidth) + 30, r: width - 14, t: 12, b: height - 44 };
  const tx = v => (x.log ? Math.log10(v) : v);
  const ty = v => (y.log ? Math.log10(v) : v);
  const X0 = tx(x.lo), X1 = tx(x.hi), Y0 = ty(y.lo), Y1 = ty(y.hi);
  const px = v => box.l + (tx(v) - X0) / (X1 - X0) * (box.r - box.l);
  const py = v => box.b - (ty(v) - Y0) / (Y1 - Y0) * (box.b - box.t);
  ctx.lineWidth = 1; ctx.strokeStyle = "#e7eaee"; ctx.fillStyle = "#4a5361";
  ctx.textBaseline = "middle"; ctx.textAlign = "right";
  y.ticks.forEach((v, i) => {
    const yy = Math.round(py(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(box.l, yy); ctx.lineTo(box.r, yy); ctx.stroke();
    ctx.fillText(yLabels[i], box.l - 6, yy);
  });
  ctx.textBaseline = "top"; ctx.textAlign = "center";
  let lastRight = -Infinity;
  x.ticks.forEach(v => {
    const xx = Math.round(px(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(xx, box.t); ctx.lineTo(xx, box.b); ctx.stroke();
    const label = x.label(v), w = ctx.measureText(label).width;
    if (xx - w / 2 > lastRight + 4) { ctx.fillText(label, xx, box.b + 6); lastRight = xx + w / 2; }
  });
  ctx.strokeStyle = "#8f99a6";
  ctx.strokeRect(box.l + 0.5, box.t + 0.5, box.r - box.l - 1, box.b - box.t - 1);
  if (!y.log && y.lo < 0 && y.hi > 0) { const yy = Math.round(py(0)) + 0.5; ctx.beginPath(); ctx.moveTo(box.l, yy); ctx.lineTo(box.r, yy); ctx.stroke(); }
  if (!x.log && x.lo < 0 && x.hi > 0) { const xx = Math.round(px(0)) + 0.5; ctx.beginPath(); ctx.moveTo(xx, box.t); ctx.lineTo(xx, box.b); ctx.stroke(); }
  ctx.fillStyle = "#1d2330"; ctx.font = TITLE_FONT;
  ctx.textBaseline = "bottom"; ctx.fillText(x.title, (box.l + box.r) / 2, height - 4);
  ctx.save(); ctx.translate(13, (box.t + box.b) / 2); ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = "middle"; ctx.fillText(y.title, 0, 0); ctx.restore();
  ctx.font = FONT;
  return { box, px, py };
}

function clip(ctx, box) { ctx.save(); ctx.beginPath(); ctx.rect(box.l, box.t, box.r - box.l, box.b - box.t); ctx.clip(); }

function strokeSegments(ctx, segments, px, py, color, dash, width = 2.5) {
  ctx.strokeStyle = color; ctx.lineWidth = width; ctx.setLineDash(dash); ctx.lineJoin = "round"; ctx.lineCap = "round";
  for (const seg of segments) {
    if (seg.length < 2) continue;
    ctx.beginPath();
    seg.forEach(([x, y], i) => (i ? ctx.lineTo(px(x), py(y)) : ctx.moveTo(px(x), py(y))));
    ctx.stroke();
  }
  ctx.setLineDash([]);
}

function dot(ctx, x, y, color, filled, r = 4.5) {
  ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI);
  ctx.lineWidth = 2; ctx.strokeStyle = color; ctx.setLineDash([]);
  ctx.fillStyle = filled ? color : "#ffffff";
  ctx.fill(); ctx.stroke();
}

// A legend entry: a sample of the line (its colour and dash) or of the marker, and a text.
function swatch(kind, color, dash) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", "26"); svg.setAttribute("height", "12"); svg.setAttribute("aria-hidden", "true");
  const add = (tag, attrs) => { const n = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); svg.appendChild(n); };
  if (kind === "line") add("line", { x1: 1, y1: 6, x2: 25, y2: 6, stroke: color, "stroke-width": 3, "stroke-dasharray": dash.join(" "), "stroke-linecap": "round" });
  else if (kind === "open" || kind === "closed") add("circle", { cx: 13, cy: 6, r: 4, stroke: color, "stroke-width": 2, fill: kind === "closed" ? color : "#fff" });
  else if (kind === "square") add("rect", { x: 8, y: 1, width: 10, height: 10, fill: color });
  else add("circle", { cx: 13, cy: 6, r: 4, fill: color });
  return svg;
}

function setLegend(list, items) {
  list.textContent = "";
  for (const it of items) {
    list.appendChild(element("li", { dataset: { key: it.key } }, swatch(it.kind || "line", it.color, it.dash || []), it.text));
  }
}

// -- URL state ------------------------------------------------------------------------------------

function readState() {
  const e = entry();
  const p = {};
  if (e && e.kind === "elementwise") {
    for (const q of e.params) {
      const raw = form.elements[q.name] ? form.elements[q.name].value.trim() : "";
      if (raw !== "" && Number(raw) !== q.default) p[q.name] = raw;
    }
  }
  return {
    view, fn: select.value, params: p,
    xmin: form.elements.xmin.value.trim(), xmax: form.elements.xmax.value.trim(),
    second: form.elements.second.checked,
    compare: form.elements.compare.checked, compareWith: compareWith.slice(),
    cmode: document.querySelector("input[name=cmode]:checked").value,
    logits: logits.slice(), temperature,
    lab: labSettings(),
  };
}

function writeURL() {
  if (!ready) return;
  const s = readState();
  const q = new URLSearchParams();
  if (s.view !== "plot") q.set("view", s.view);
  if (s.fn !== "sigmoid") q.set("fn", s.fn);
  for (const [k, v] of Object.entries(s.params)) q.set("p." + k, v);
  if (s.xmin !== "-6" || s.xmax !== "6") q.set("x", s.xmin + "," + s.xmax);
  if (s.second) q.set("d2", "1");
  if (s.compare) { q.set("cmp", s.compareWith.join(",")); q.set("cmode", s.cmode); }
  if (s.logits.some((v, i) => v !== DEFAULT_LOGITS[i])) q.set("z", s.logits.join(","));
  if (s.temperature !== 1) q.set("T", String(s.temperature));
  for (const k of ["fn", "depth", "width", "init"]) if (s.lab[k] !== LAB_DEFAULTS[k]) q.set("lab." + k, String(s.lab[k]));
  const qs = q.toString().replace(/%2C/g, ",");
  const url = location.pathname + (qs ? "?" + qs : "") + location.hash;
  if (url !== location.pathname + location.search + location.hash) history.replaceState(null, "", url);
}

// The state in the URL, applied to the controls (unknown or invalid values are reported and skipped).
function applyURL() {
  const q = new URLSearchParams(location.search);
  const problems = [];
  let fn = q.get("fn");
  if (fn !== null && !catalog[fn]) { problems.push(`unknown activation “${fn}”`); fn = null; }
  const wanted = q.get("view");
  if (wanted !== null && !["plot", "softmax", "lab"].includes(wanted)) problems.push(`unknown view “${wanted}”`);
  let v = ["plot", "softmax", "lab"].includes(wanted) ? wanted : null;
  if (!fn) fn = v === "softmax" ? "softmax" : "sigmoid";
  if (v === null) v = catalog[fn].kind === "vector" ? "softmax" : "plot";
  if (v === "softmax" && catalog[fn].kind !== "vector") fn = "softmax";
  if (v === "plot" && catalog[fn].kind === "vector") v = "softmax";
  select.value = fn;
  if (catalog[fn].kind === "vector") lastVector = fn; else lastElementwise = fn;
  showParams();
  for (const [k, val] of q) {
    if (!k.startsWith("p.")) continue;
    const name = k.slice(2);
    if (form.elements[name] && paramsBox.contains(form.elements[name])) form.elements[name].value = val;
    else problems.push(`${fn} has no parameter “${name}”`);
  }
  const x = q.get("x");
  if (x !== null) {
    const [lo, hi] = x.split(",");
    form.elements.xmin.value = lo === undefined ? "" : lo;
    form.elements.xmax.value = hi === undefined ? "" : hi;
  }
  form.elements.second.checked = q.get("d2") === "1";
  if (q.has("cmp")) {
    form.elements.compare.checked = true;
    const names = q.get("cmp").split(",").filter(Boolean);
    compareWith = [];
    for (const n of names) {
      if (!catalog[n] || catalog[n].kind !== "elementwise") problems.push(`cannot compare “${n}”`);
      else if (!compareWith.includes(n) && n !== fn && compareWith.length < MAX_COMPARE - 1) compareWith.push(n);
    }
  }
  const mode = q.get("cmode");
  if (mode === "f" || mode === "df") document.querySelector(`input[name=cmode][value=${mode}]`).checked = true;
  const z = q.get("z");
  if (z !== null) {
    const values = z.split(",").map(Number);
    if (values.length === 4 && values.every(n => Number.isFinite(n) && n >= -5 && n <= 5)) logits = values;
    else problems.push("z must be four numbers from −5 to 5");
  }
  const T = q.get("T");
  if (T !== null) {
    const t = Number(T);
    if (Number.isFinite(t) && t >= 0.1 && t <= 10) temperature = t; else problems.push("T must be from 0.1 to 10");
  }
  const lab = {};
  for (const k of ["fn", "depth", "width", "init"]) if (q.has("lab." + k)) lab[k] = q.get("lab." + k);
  applyLab(lab, problems);
  if (problems.length) say("url", "Ignored in the address: " + problems.join("; ") + ".");
  return v;
}

// -- the function selection, its parameters and the info card -------------------------------------

function showParams() {
  paramsBox.textContent = "";
  const e = entry();
  if (e.kind !== "elementwise") return; // vector functions: the Softmax view has their controls
  for (const p of e.params) {
    // an array parameter (rational's coefficients): comma-separated numbers in a text field
    const input = p.length
      ? element("input", { type: "text", name: p.name, value: p.default.join(", "), size: 40, inputMode: "decimal" })
      : element("input", { type: "number", step: "any", name: p.name, value: p.default });
    if (!p.length && p.minimum !== null) input.min = p.minimum;
    if (!p.length && p.maximum !== null) input.max = p.maximum;
    paramsBox.appendChild(element("label", { title: p.description }, p.name, input));
  }
}

function showInfo() {
  const e = entry();
  $("info-name").textContent = e.name + (e.aliases.length ? " (" + e.aliases.join(", ") + ")" : "");
  tex($("info-formula"), e.formula);
  tex($("info-derivative"), e.derivative_formula);
  $("info-range").textContent = e.range;
  showKinks();
  $("info-use").textContent = e.typical_use.map(u => USES[u] || u.replaceAll("_", " ")).join("; ");
  $("info-notes").textContent = e.notes.join(" ");
  $("info-reference").textContent = e.reference || "";
}

// The catalog's kinks, with the values their parameters now have.
function showKinks() {
  const e = entry();
  const values = e.kind === "elementwise" ? { ...defaults(e), ...params() } : {};
  const show = v => {
    const r = resolve(v, values);
    return typeof v === "string" && r !== null && String(r) !== v ? `${v} = ${fmt(r, 6)}` : String(v);
  };
  $("info-kinks").textContent = e.kinks.length
    ? e.kinks.map(k => `at x = ${show(k.at)}: f′ = ${show(k.derivative)} (${k.note})`).join("; ") : "none: smooth";
}

// The parameters as typed (blank: the default), for the API.
function params() {
  const out = {};
  const e = entry();
  if (e.kind === "vector") {
    if (e.params.some(p => p.name === "temperature")) out.temperature = temperature;
    return out;
  }
  for (const p of e.params) {
    const input = form.elements[p.name];
    const raw = input ? input.value.trim() : "";
    if (raw === "") continue;
    if (p.length) {
      const numbers = raw.split(",").map(v => Number(v.trim()));
      if (numbers.every(Number.isFinite)) out[p.name] = numbers;
    } else if (Number.isFinite(Number(raw))) {
      out[p.name] = Number(raw);
    }
  }
  return out;
}

function defaults(e) { return Object.fromEntries(e.params.map(p => [p.name, p.default])); }

// A kink's position or derivative: a number, or a parameter's name (possibly negated), else null.
function resolve(value, values) {
  if (typeof value === "number") return value;
  if (typeof value !== "string") return null;
  const s = value.trim();
  const negative = s.startsWith("-");
  const name = negative ? s.slice(1).trim() : s;
  if (name in values) return negative ? -values[name] : values[name];
  const n = Number(s);
  return s !== "" && Number.isFinite(n) ? n : null;
}

// -- views and tabs -----------------------------------------------------------------------------------

function setView(v, focus) {
  view = v;
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const on = tab.dataset.view === v;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    if (on && focus) tab.focus();
  }
  $("panel-function").hidden = v === "lab";
  $("panel-function").setAttribute("aria-labelledby", v === "softmax" ? "tab-softmax" : "tab-plot");
  $("panel-lab").hidden = v !== "lab";
  $("view-plot").hidden = v !== "plot";
  $("view-softmax").hidden = v !== "softmax";
  document.body.dataset.view = v;
  compareBox.hidden = !(v === "plot" && form.elements.compare.checked);
  checkSecond();
}

function chooseTab(v) {
  if (v === "plot" && entry().kind === "vector") switchFunction(lastElementwise);
  else if (v === "softmax" && entry().kind !== "vector") switchFunction(lastVector);
  setView(v);
  refresh();
}

function switchFunction(name) {
  select.value = name;
  const e = entry();
  if (e.kind === "vector") lastVector = name; else lastElementwise = name;
  compareWith = compareWith.filter(n => n !== name);
  showParams(); showInfo(); clearReadout();
  if (e.kind === "vector") { showSliders(); smIntro(); }
}

function checkSecond() {
  const e = entry();
  if (form.elements.second.checked && e && e.kind === "vector") {
    say("second", `f″ is drawn for elementwise functions only: ${e.name} is a vector function (its derivative is a Jacobian matrix, not a curve).`);
  } else say("second", null);
}

function refresh() {
  if (!ready) return;
  writeURL();
  if (view === "plot") { showKinks(); updatePlot(); updateProfile(); }
  else if (view === "softmax") updateBars();
  else if (lab && lab.settings === JSON.stringify(labSettings())) drawLab(); // shown again: no need to simulate again
  else scheduleLab(0);
}

// -- the plot -------------------------------------------------------------------------------------------

function grid() {
  const lo = Number(form.elements.xmin.value), hi = Number(form.elements.xmax.value);
  if (form.elements.xmin.value.trim() === "" || form.elements.xmax.value.trim() === "" || !Number.isFinite(lo) || !Number.isFinite(hi)) {
    return { error: "x from and to must be numbers: the plot keeps its last range." };
  }
  if (!(hi > lo)) return { error: `x from must be below to (now ${fmt(lo)} and ${fmt(hi)}): the plot keeps its last range.` };
  const step = (hi - lo) / (POINTS - 1);
  const decimals = Math.min(20, Math.max(0, Math.ceil(-Math.log10(step)) + 4));
  const xs = [];
  for (let i = 0; i < POINTS; i++) xs.push(Number((lo + (hi - lo) * i / (POINTS - 1)).toFixed(decimals)));
  return { xs, lo, hi, step };
}

// The kinks of a function inside [lo, hi]: the positions, and the points just left and right of each.
function kinksIn(e, values, lo, hi) {
  const out = [];
  for (const k of e.kinks) {
    const at = resolve(k.at, values);
    if (at === null || at < lo || at > hi) continue;
    if (out.some(o => o.x === at)) continue;
    const h = 1e-9 * Math.max(1, Math.abs(at));
    out.push({ x: at, probes: [at - h, at, at + h] });
  }
  return out.sort((a, b) => a.x - b.x);
}

// A one-sided limit, read just beside the kink: the value at the kink itself when it is that close
// (selu's left limit λα·e^(-1e-9) is its value λα), else rounded to 10 digits.
function limit(v, at) {
  if (Number.isFinite(v) && Number.isFinite(at) && Math.abs(v - at) <= 1e-8 * Math.max(1, Math.abs(at))) return at;
  return Number.isFinite(v) ? Number(v.toPrecision(10)) : v;
}

// Grid values cut at the kinks: each piece ends at the one-sided limit, so corners are sharp and
// jumps are not bridged by a line.
function segments(xs, ys, kinks, side) {
  const segs = [];
  let cur = [];
  let k = 0;
  const cut = () => { if (cur.length) segs.push(cur); cur = []; };
  for (let i = 0; i < xs.length; i++) {
    let onKink = false;
    while (k < kinks.length && kinks[k].x <= xs[i]) {
      const kk = kinks[k++];
      const left = side ? side(kk, 0) : null, right = side ? side(kk, 2) : null;
      if (left === null || right === null || !Number.isFinite(left) || !Number.isFinite(right)) { cut(); }
      else {
        cur.push([kk.x, left]);
        const scale = Math.max(1, Math.abs(left), Math.abs(right));
        if (Math.abs(left - right) > 1e-6 * scale) { cut(); cur.push([kk.x, right]); }
      }
      if (kk.x === xs[i]) onKink = true;
    }
    if (onKink) continue;
    if (Number.isFinite(ys[i])) cur.push([xs[i], ys[i]]); else cut();
  }
  cut();
  return segs;
}

async function kinkValues(e, values, lo, hi) {
  const kinks = kinksIn(e, values, lo, hi);
  if (!kinks.length) return kinks;
  const x = kinks.flatMap(k => k.probes);
  const body = { activation: e.name, x, params: values };
  const [a, d] = await Promise.all([api("activate", body), api("derivative", body)]);
  kinks.forEach((k, i) => {
    k.f = a.y.slice(3 * i, 3 * i + 3);
    k.df = d.dydx.slice(3 * i, 3 * i + 3);
    k.value = k.df[1];          // what the service answers at the kink itself
    k.left = limit(k.df[0], k.value);
    k.right = limit(k.df[2], k.value);
  });
  return kinks;
}

async function updatePlot() {
  const e = entry();
  if (!e || e.kind !== "elementwise") return;
  const g = grid();
  if (g.error) { say("range", g.error); return; }
  say("range", null);
  const t = ticket("plot");
  const compare = form.elements.compare.checked;
  const values = { ...defaults(e), ...params() };
  const body = { activation: e.name, x: g.xs, params: params() };
  try {
    let next;
    if (!compare) {
      const second = form.elements.second.checked;
      const calls = [api("activate", body), api("derivative", body), kinkValues(e, values, g.lo, g.hi)];
      if (second) calls.push(api("derivative", { ...body, order: 2 }));
      const [a, d, kinks, s] = await Promise.all(calls);
      if (!current("plot", t)) return;
      const curves = [
        { key: "y", label: LABELS.y, values: a.y, color: COLORS.y, dash: DASHES.y, side: (k, j) => k.f[j] },
        { key: "dydx", label: LABELS.dydx, values: d.dydx, color: COLORS.dydx, dash: DASHES.dydx, side: (k, j) => k.df[j] },
      ];
      if (s) curves.push({ key: "d2ydx2", label: LABELS.d2ydx2, values: s.d2ydx2, color: COLORS.d2ydx2, dash: DASHES.d2ydx2, side: null });
      for (const c of curves) { c.kinks = kinks; c.markers = c.key === "dydx"; }
      next = { mode: "single", activation: e.name, params: a.params, x: g.xs, step: g.step, curves, kinks: kinks.map(k => ({ activation: e.name, ...k })) };
    } else {
      const mode = document.querySelector("input[name=cmode]:checked").value;
      const members = [e.name, ...compareWith].slice(0, MAX_COMPARE);
      const results = await Promise.all(members.map(async name => {
        const m = catalog[name];
        const mine = name === e.name;
        const vals = mine ? values : defaults(m);
        const b = { activation: name, x: g.xs, params: mine ? params() : {} };
        const [r, kinks] = await Promise.all([api(mode === "f" ? "activate" : "derivative", b), kinkValues(m, vals, g.lo, g.hi)]);
        return { name, r, kinks };
      }));
      if (!current("plot", t)) return;
      const curves = results.map(({ name, r, kinks }, i) => ({
        key: name, name, label: (mode === "f" ? "f(x)" : "f′(x)") + ": " + name + (name === e.name && Object.keys(r.params).length ? " (" + Object.entries(r.params).map(([k, v]) => `${k} = ${v}`).join(", ") + ")" : ""),
        values: mode === "f" ? r.y : r.dydx, color: PALETTE[i].color, dash: PALETTE[i].dash, kinks,
        side: mode === "f" ? (k, j) => k.f[j] : (k, j) => k.df[j], markers: mode === "df",
      }));
      next = {
        mode: "compare", cmode: mode, activation: e.name, params: results[0].r.params, x: g.xs, step: g.step, curves,
        kinks: mode === "df" ? results.flatMap(({ name, kinks }) => kinks.map(k => ({ activation: name, ...k }))) : [],
      };
    }
    say("plot", null); say("catalog", null);
    const sameGrid = plot && plot.x.length === next.x.length && plot.x[0] === next.x[0] && plot.x[plot.x.length - 1] === next.x[next.x.length - 1];
    const oldX = cursor !== null && plot ? plot.x[cursor] : null;
    const sameFunction = plot && plot.activation === next.activation;
    plot = next;
    canvas.dataset.params = JSON.stringify(next.params); // what is drawn, for tests and curious readers
    if (cursor !== null && sameFunction && !sameGrid) {
      // The range changed: keep the cursor at the same x if it is still shown.
      cursor = oldX !== null && oldX >= next.x[0] && oldX <= next.x[next.x.length - 1]
        ? nearest(next.x, oldX) : null;
    } else if (!sameFunction) cursor = null;
    draw();
    showReadout();
  } catch (err) {
    if (current("plot", t)) say("plot", err.status === 401 ? err.message : "Cannot plot this: " + err.message);
  }
}

function nearest(xs, x) {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (Math.abs(xs[i] - x) < Math.abs(xs[best] - x)) best = i;
  return best;
}

function draw() {
  const { ctx, width, height } = prepare(canvas, 0.52, 260, 470);
  if (!plot) return;
  const xs = plot.x, x0 = xs[0], x1 = xs[xs.length - 1];
  let lo = Infinity, hi = -Infinity;
  const segs = plot.curves.map(c => segments(xs, c.values, c.kinks, c.side));
  for (const s of segs) for (const piece of s) for (const [, v] of piece) { if (v < lo) lo = v; if (v > hi) hi = v; }
  for (const k of plot.kinks) for (const v of [k.left, k.right, k.value]) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!Number.isFinite(lo)) { lo = -1; hi = 1; }
  if (hi - lo < 1e-12 * Math.max(1, Math.abs(hi))) { const d = Math.max(1, Math.abs(hi)) * 0.5; lo -= d; hi += d; }
  const pad = (hi - lo) * 0.06; lo -= pad; hi += pad;
  const yt = niceTicks(lo, hi, Math.max(3, Math.round((height - 56) / 62)));
  const xt = niceTicks(x0, x1, Math.max(3, Math.round((width - 80) / 75)));
  const yTitle = plot.mode === "single" ? plot.curves.map(c => c.label).join(", ") : (plot.cmode === "f" ? "f(x)" : "f′(x)");
  const { box, px, py } = frame(ctx, width, height,
    { lo: x0, hi: x1, ticks: xt.ticks, label: v => tickLabel(v, xt.step), title: "x" },
    { lo, hi, ticks: yt.ticks, label: v => tickLabel(v, yt.step), title: yTitle });
  plot.box = box; plot.px = px; plot.py = py;
  clip(ctx, box);
  // Compared curves get thinner one after the other, so a curve lying on another still shows.
  plot.curves.forEach((c, i) => strokeSegments(ctx, segs[i], px, py, c.color, c.dash, plot.mode === "compare" ? 4 - 0.7 * i : 2.5));
  // Kinks on f′: open dots at the one-sided limits, a filled dot at the value the service takes.
  for (const c of plot.curves) {
    if (!c.markers) continue;
    for (const k of c.kinks) {
      const color = c.color;
      for (const v of new Set([k.left, k.right])) if (Number.isFinite(v) && v !== k.value) dot(ctx, px(k.x), py(v), color, false);
      if (Number.isFinite(k.value)) dot(ctx, px(k.x), py(k.value), color, true);
    }
  }
  if (cursor !== null && cursor < xs.length) {
    const cx = Math.round(px(xs[cursor])) + 0.5;
    ctx.strokeStyle = "#1d2330"; ctx.lineWidth = 1; ctx.setLineDash([3, 3]);
    ctx.beginPath(); ctx.moveTo(cx, box.t); ctx.lineTo(cx, box.b); ctx.stroke(); ctx.setLineDash([]);
    for (const c of plot.curves) { const v = c.values[cursor]; if (Number.isFinite(v)) dot(ctx, cx, py(v), c.color, true, 3.5); }
  }
  ctx.restore();
  canvas.dataset.curves = String(plot.curves.length);
  canvas.dataset.activation = plot.activation;
  canvas.dataset.mode = plot.mode;
  canvas.dataset.drawn = JSON.stringify(plot.curves.map(c => c.key));
  canvas.dataset.xticks = JSON.stringify(xt.ticks);
  canvas.dataset.yticks = JSON.stringify(yt.ticks);
  canvas.dataset.xtickLabels = JSON.stringify(xt.ticks.map(v => tickLabel(v, xt.step)));
  canvas.dataset.ytickLabels = JSON.stringify(yt.ticks.map(v => tickLabel(v, yt.step)));
  canvas.dataset.kinks = JSON.stringify(plot.kinks.map(k => ({ activation: k.activation, x: k.x, value: k.value, left: k.left, right: k.right })));
  const items = plot.curves.map(c => ({ key: c.key, color: c.color, dash: c.dash, text: c.label }));
  if (plot.curves.some(c => c.markers && c.kinks.length)) {
    items.push({ key: "kink-value", kind: "closed", color: "#4a5361", text: "f′ the service takes at a kink" });
    if (plot.kinks.some(k => k.left !== k.value || k.right !== k.value)) items.push({ key: "kink-limit", kind: "open", color: "#4a5361", text: "one-sided limits" });
  }
  setLegend(legend, items);
}

function clearReadout() {
  cursor = null;
  readout.textContent = "Point at (or touch) the plot, or focus it and use ← → (Shift: 10 steps) to read values off the curves.";
  for (const k of ["x", "y", "dydx", "d2ydx2", "values", "activation", "index"]) delete readout.dataset[k];
  if (plot && plot.box) draw();
}

function showReadout() {
  if (cursor === null || !plot) { clearReadout(); return; }
  const i = cursor, x = plot.x[i];
  for (const k of ["y", "dydx", "d2ydx2", "values"]) delete readout.dataset[k];
  readout.dataset.x = String(x);
  readout.dataset.index = String(i);
  readout.dataset.activation = plot.activation;
  readout.textContent = "";
  const part = (label, v) => readout.appendChild(element("span", {}, label + " = ", element("b", {}, String(v))));
  part("x", x);
  if (plot.mode === "single") {
    for (const c of plot.curves) { part(c.label, c.values[i]); readout.dataset[c.key] = String(c.values[i]); }
  } else {
    const vals = {};
    for (const c of plot.curves) { part(`${plot.cmode === "f" ? "f" : "f′"}(x) ${c.name}`, c.values[i]); vals[c.name] = c.values[i]; }
    readout.dataset.values = JSON.stringify(vals);
  }
}

function moveCursor(i) {
  if (!plot) return;
  cursor = Math.max(0, Math.min(plot.x.length - 1, i));
  showReadout();
  draw();
}

function hover(event) {
  if (!plot || !plot.box) return;
  const rect = canvas.getBoundingClientRect();
  const t = (event.clientX - rect.left - plot.box.l) / (plot.box.r - plot.box.l);
  moveCursor(Math.round(t * (plot.x.length - 1)));
}

function keyboard(event) {
  if (!plot) return;
  const steps = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
  if (event.key === "Home") { moveCursor(0); event.preventDefault(); return; }
  if (event.key === "End") { moveCursor(plot.x.length - 1); event.preventDefault(); return; }
  if (steps === undefined) return;
  event.preventDefault();
  const start = cursor === null ? Math.floor(plot.x.length / 2) : cursor + steps * (event.shiftKey ? 10 : 1);
  moveCursor(start);
}

// -- compare ------------------------------------------------------------------------------------------

function showCompare() {
  const on = form.elements.compare.checked;
  compareBox.hidden = !(on && view === "plot");
  document.body.classList.toggle("comparing", on);
  const members = [select.value, ...compareWith];
  compareList.textContent = "";
  members.forEach((name, i) => {
    const chip = element("li", { dataset: { name } }, swatch("line", PALETTE[i].color, PALETTE[i].dash), name);
    if (i === 0) chip.appendChild(element("span", { className: "hint" }, " (chosen above)"));
    else {
      const remove = element("button", { type: "button", className: "remove", title: "remove " + name, "aria-label": "remove " + name }, "×");
      remove.addEventListener("click", () => { compareWith = compareWith.filter(n => n !== name); showCompare(); refresh(); });
      chip.appendChild(remove);
    }
    compareList.appendChild(chip);
  });
  compareAdd.textContent = "";
  const full = members.length >= MAX_COMPARE;
  compareAdd.appendChild(element("option", { value: "" }, full ? "four at most" : "a function…"));
  for (const e of elementwise()) if (!members.includes(e.name)) compareAdd.appendChild(element("option", { value: e.name }, e.name));
  compareAdd.disabled = full;
}

// -- profile card -------------------------------------------------------------------------------------

async function updateProfile() {
  const e = entry();
  const body = $("profile-body");
  const card = $("profile");
  if (!e || e.kind !== "elementwise") { card.hidden = true; return; }
  card.hidden = false;
  const t = ticket("profile");
  $("profile-title").textContent = `Profile of ${e.name}`;
  if (card.dataset.activation !== e.name) { body.textContent = ""; body.appendChild(element("p", { className: "hint" }, "Working out the moments…")); }
  card.dataset.state = "loading";
  const values = params();
  try {
    const p = await api("profile", { activation: e.name, params: values, mean: 0, std: 1, sigma_w: 1, sigma_b: 0 });
    if (!current("profile", t)) return;
    renderProfile(e, p);
    card.dataset.state = "ready";
    card.dataset.activation = e.name;
    card.dataset.profile = JSON.stringify(p);
  } catch (err) {
    if (!current("profile", t)) return;
    body.textContent = "";
    body.appendChild(element("p", { className: "hint" }, err.status === 404
      ? "This service does not offer POST profile: no moments to show."
      : "No profile: " + err.message));
    renderUses(e, body);
    card.dataset.state = "error";
    card.dataset.activation = e.name;
  }
}

function renderProfile(e, p) {
  const body = $("profile-body");
  body.textContent = "";
  const m = p.moments;
  const math = source => { const span = element("span", { className: "math" }); tex(span, source); return span; };
  body.appendChild(element("p", { className: "lead" }, "For a pre-activation ", math("z \\sim \\mathcal{N}(0, 1)"), ":"));
  const stats = element("div", { className: "stats" });
  const stat = (label, value, extra, hint) => stats.appendChild(element("div", { className: "stat", title: hint || "" },
    element("span", { className: "label" }, label), element("span", { className: "value" }, value), extra || null));
  // A moment that is 0 up to rounding (tanh's mean: -1e-16) reads as ≈ 0; the number is in the title.
  const moment = v => (Math.abs(v) < 1e-12 && v !== 0 ? element("span", { title: String(v) }, "≈ 0") : fmt(v));
  stat(math("\\mathbb{E}\\,f(z)"), moment(m.mean));
  stat(math("\\operatorname{Var} f(z)"), moment(m.variance));
  stat(math("\\mathbb{E}\\,f(z)^2"), moment(m.second_moment));
  stat(math("\\mathbb{E}\\,f'(z)"), moment(m.derivative_mean));
  stat(math("\\mathbb{E}\\,f'(z)^2"), moment(m.derivative_second_moment));
  const meter = v => element("span", { className: "meter" }, element("span", { style: `width:${Math.max(0, Math.min(1, v)) * 100}%` }));
  stat("dead: f′(z) = 0", (100 * m.dead).toFixed(1) + " %", meter(m.dead), "P(f′(z) = 0): units that pass no gradient at all");
  stat("saturated: |f′(z)| < 0.01", (100 * m.saturated).toFixed(1) + " %", meter(m.saturated), "P(|f′(z)| < 0.01): units that pass almost no gradient");
  body.appendChild(stats);

  const gain = p.gain || {};
  const g = element("p", { className: "gain" }, element("strong", {}, "Gain "), math("1/\\sqrt{\\mathbb{E}\\,f(z)^2}"), " = ", element("b", {}, fmt(gain.value)));
  if (gain.torch !== undefined && gain.torch !== null) g.append(" · torch.nn.init.calculate_gain: ", element("b", {}, fmt(gain.torch)));
  if (gain.note) g.append(element("span", { className: "note" }, gain.note));
  body.appendChild(g);

  const mf = p.mean_field;
  if (mf) {
    const c = element("p", { className: "critical" }, element("strong", {}, "Critical "), math("\\sigma_w"), " at ", math("\\sigma_b = 0"), ": ");
    if (mf.critical_sigma_w !== undefined && mf.critical_sigma_w !== null) {
      c.append(element("b", {}, fmt(mf.critical_sigma_w)), " — the weight scale at which signals neither die out nor explode with depth.");
    } else c.append(element("b", {}, "none"), " — no weight scale keeps signals from dying out or exploding with depth.");
    if (mf.note) c.append(element("span", { className: "note" }, `At σ_w = ${fmt(mf.sigma_w)}: ${mf.note}`));
    body.appendChild(c);
  }
  const go = element("button", { type: "button", className: "link", id: "profile-to-lab" }, `Run ${e.name} 30 layers deep in the depth lab →`);
  go.addEventListener("click", () => {
    applyLab({ fn: e.name, depth: "30" }, []);
    chooseTab("lab");
    window.scrollTo({ top: 0 });
  });
  body.appendChild(element("p", {}, go));
  renderUses(e, body);
}

// "Which function where": the catalog's typical uses, this function's first, each with the functions
// the catalog lists for it (a click on one shows it).
function renderUses(e, body) {
  const uses = e.typical_use.map(u => USES[u] || u.replaceAll("_", " "));
  body.appendChild(element("p", { className: "uses" }, element("strong", {}, "Which function where: "), `${e.name} is a choice for ${uses.join("; ")}.`));
  const byUse = {};
  for (const f of Object.values(catalog)) for (const u of f.typical_use) (byUse[u] = byUse[u] || []).push(f.name);
  const order = [...e.typical_use, ...Object.keys(byUse).filter(u => !e.typical_use.includes(u))];
  const dl = element("dl", { className: "where" });
  for (const u of order) {
    const names = element("dd", {});
    byUse[u].forEach((name, i) => {
      if (i) names.append(", ");
      if (name === e.name) names.append(element("strong", {}, name));
      else {
        const b = element("button", { type: "button", className: "link", dataset: { fn: name } }, name);
        b.addEventListener("click", () => pick(name));
        names.append(b);
      }
    });
    dl.append(element("dt", { className: e.typical_use.includes(u) ? "mine" : "" }, USES[u] || u.replaceAll("_", " ")), names);
  }
  body.appendChild(element("details", { className: "guide" }, element("summary", {}, "Every use in the catalog"), dl));
}

// Show another function (the Softmax view for a vector function), as the select would.
function pick(name) {
  select.value = name;
  select.dispatchEvent(new Event("change"));
  window.scrollTo({ top: 0 });
}

// -- softmax view ------------------------------------------------------------------------------------

const TEMPERATURE_STEPS = 200; // the temperature slider is logarithmic, 0.1 to 10

function showSliders() {
  const box = $("sm-sliders");
  const e = entry();
  box.textContent = "";
  const isGlu = e.name === "glu";
  logits.forEach((v, i) => {
    const name = isGlu ? (i < 2 ? `a${i + 1}` : `b${i - 1}`) : `z${i + 1}`;
    const input = element("input", { type: "range", min: -5, max: 5, step: 0.1, value: v, name: "z" + (i + 1), "aria-label": `logit ${name}` });
    const out = element("output", { className: "value" }, fmt(v, 3));
    input.addEventListener("input", () => { logits[i] = Number(input.value); out.textContent = fmt(logits[i], 3); refresh(); });
    box.appendChild(element("label", { className: "slider" }, element("span", { className: "name" }, isGlu ? `${name} (z${i + 1})` : name), input, out));
  });
  if (barFunctions().some(b => catalog[b.name].params.some(p => p.name === "temperature"))) {
    const input = element("input", { type: "range", min: 0, max: TEMPERATURE_STEPS, step: 1, name: "temperature", "aria-label": "temperature T" });
    input.value = String(Math.round((Math.log10(temperature) + 1) / 2 * TEMPERATURE_STEPS));
    const out = element("output", { className: "value" }, fmt(temperature, 3));
    input.addEventListener("input", () => {
      temperature = Number(Math.pow(10, Number(input.value) / TEMPERATURE_STEPS * 2 - 1).toPrecision(2));
      out.textContent = fmt(temperature, 3);
      refresh();
    });
    box.appendChild(element("label", { className: "slider temperature" }, element("span", { className: "name" }, "temperature T"), input, out));
  }
}

// The functions drawn as bars: the one chosen, softmax and sparsemax beside it, and any entmax the catalog has.
function barFunctions() {
  const e = entry();
  if (e.name === "glu") return [{ name: "sigmoid", gate: true }, { name: "glu" }];
  const names = [e.name];
  for (const n of ["softmax", "sparsemax", ...Object.keys(catalog).filter(n => n.includes("entmax"))]) {
    if (catalog[n] && !names.includes(n)) names.push(n);
  }
  return names.map(name => ({ name }));
}

function smIntro() {
  const e = entry();
  const p = $("sm-intro");
  p.textContent = "";
  if (e.name === "glu") {
    p.append("glu halves its input: the four numbers split into a = (z1, z2) and b = (z3, z4), and the output is ",
      element("span", { className: "inline-math", dataset: { tex: "a \\odot \\sigma(b)" } }),
      ": each of a's two values let through by a gate σ(b) between 0 and 1. Four inputs, two outputs.");
  } else {
    const what = {
      softmax: "softmax turns four logits z into a probability distribution: every class gets some probability.",
      log_softmax: "log_softmax(z) = log softmax(z): the log-probabilities a cross-entropy loss works with (each bar's exponential is softmax's bar beside it).",
      softmin: "softmin(z) = softmax(−z): the smallest logit gets the largest probability.",
      sparsemax: "sparsemax projects the logits z onto the probability simplex: unlikely classes get exactly 0.",
    }[e.name] || `${e.name} maps four logits z to a vector.`;
    const others = barFunctions().slice(1).map(b => b.name);
    p.append(what + (others.length ? ` Beside it, ${others.join(" and ")} of the same logits: softmax never gives exactly 0, sparsemax does.` : "") +
      (barFunctions().some(b => catalog[b.name].params.some(q => q.name === "temperature"))
        ? " A low temperature T sharpens softmax towards the largest logit, a high one flattens it (sparsemax has no temperature)." : ""));
  }
  for (const m of p.querySelectorAll("[data-tex]")) tex(m, m.dataset.tex);
}

async function updateBars() {
  const e = entry();
  if (!e || e.kind !== "vector") return;
  const t = ticket("bars");
  const shown = barFunctions();
  try {
    const answers = await Promise.all(shown.map(b => {
      const m = catalog[b.name];
      const body = { activation: b.name, x: b.gate ? logits.slice(2) : logits.slice(), params: {} };
      if (m.params.some(p => p.name === "temperature")) body.params.temperature = temperature;
      return api("activate", body).then(r => ({ ...b, body, r }));
    }));
    if (!current("bars", t)) return;
    say("bars", null); say("catalog", null);
    renderBars(answers);
  } catch (err) {
    if (current("bars", t)) say("bars", err.status === 401 ? err.message : "Cannot show the bars: " + err.message);
  }
}

function renderBars(answers) {
  const box = $("bars");
  box.textContent = "";
  const glu = answers.some(a => a.name === "glu");
  for (const a of answers) {
    const ys = a.r.y;
    const probabilities = ["softmax", "softmin", "sparsemax"].includes(a.name) || a.name.includes("entmax");
    let lo = 0, hi = 1;
    if (a.name === "log_softmax") { lo = -niceCeil(Math.max(1, -Math.min(...ys))); hi = 0; }
    if (a.name === "glu") { hi = niceCeil(Math.max(1, ...ys.map(Math.abs))); lo = -hi; }
    const withT = "temperature" in a.body.params;
    const arg = a.gate ? "b" : glu ? "z" : withT ? "z; T" : "z";
    const title = a.gate ? "gate σ(b)" : a.name === "glu" ? "glu(z) = a ⊙ σ(b)" : `${a.name}(${arg})`;
    const fig = element("figure", { className: "bars", dataset: { activation: a.name, values: JSON.stringify(ys), x: JSON.stringify(a.body.x), params: JSON.stringify(a.r.params) } });
    const sum = ys.reduce((s, v) => s + v, 0);
    const caption = element("figcaption", {}, element("strong", {}, title));
    if (probabilities) caption.append(element("span", { className: "sum" }, ` Σ = ${fmt(sum, 6)}`));
    if (a.name === "sparsemax") { const zeros = ys.filter(v => v === 0).length; caption.append(element("span", { className: "hint" }, ` · ${zeros} exact zero${zeros === 1 ? "" : "s"}`)); }
    fig.appendChild(caption);
    const area = element("div", { className: "bar-area", style: `--cols:${ys.length}` });
    const zero = (0 - lo) / (hi - lo) * 100;
    if (lo < 0 && hi > 0) area.appendChild(element("div", { className: "zero", style: `bottom:${zero}%` }));
    for (const v of new Set([lo, 0, hi])) area.appendChild(element("span", { className: "tick", style: `bottom:${(v - lo) / (hi - lo) * 100}%` }, fmt(v)));
    ys.forEach((v, i) => {
      const top = (Math.max(lo, Math.min(hi, v)) - lo) / (hi - lo) * 100;
      const col = element("div", { className: "col" });
      const bar = element("div", { className: "bar" + (v === 0 ? " exact-zero" : ""), style: `bottom:${Math.min(zero, top)}%;height:${Math.abs(top - zero)}%` });
      const label = element("span", { className: "val", style: v >= 0 ? `bottom:calc(${top}% + 2px)` : `top:calc(${100 - top}% + 2px)` }, fmt(v, 3));
      col.append(bar, label);
      area.appendChild(col);
    });
    fig.appendChild(area);
    const names = element("div", { className: "bar-names", style: `--cols:${ys.length}` });
    ys.forEach((_, i) => names.appendChild(element("span", {}, a.gate ? `σ(b${i + 1})` : a.name === "glu" ? `a${i + 1}·σ(b${i + 1})` : `z${i + 1}`)));
    fig.appendChild(names);
    box.appendChild(fig);
  }
}

// -- depth lab ---------------------------------------------------------------------------------------

function labSettings() {
  const el = labForm.elements;
  return { fn: el.lab_activation.value, depth: Number(el.lab_depth.value), width: Number(el.lab_width.value), init: el.lab_init.value };
}

function applyLab(lab, problems) {
  const el = labForm.elements;
  if (lab.fn !== undefined) {
    if (catalog[lab.fn] && catalog[lab.fn].kind === "elementwise") el.lab_activation.value = lab.fn;
    else problems.push(`the depth lab cannot simulate “${lab.fn}”`);
  }
  if (lab.depth !== undefined) {
    const d = Number(lab.depth);
    if (Number.isInteger(d) && d >= 1 && d <= 100) { el.lab_depth.value = String(d); el.lab_depth_slider.value = String(d); }
    else problems.push("lab.depth must be a whole number from 1 to 100");
  }
  if (lab.width !== undefined) {
    if ([...el.lab_width.options].some(o => o.value === String(Number(lab.width)))) el.lab_width.value = String(Number(lab.width));
    else problems.push("lab.width must be one of 8, 16, 32, 64, 128, 256, 512");
  }
  if (lab.init !== undefined) {
    if ([...el.lab_init.options].some(o => o.value === lab.init)) el.lab_init.value = lab.init;
    else problems.push(`unknown initialisation “${lab.init}”`);
  }
}

// The service bounds width × batch × depth (2^20 units): deep and wide networks get a smaller batch.
const LAB_UNITS = 1 << 20;
function labBatch(s) { return Math.max(1, Math.min(64, Math.floor(LAB_UNITS / (s.width * s.depth)))); }

let labTimer = null;
let lab = null; // the last simulation drawn

function scheduleLab(delay = 250) {
  clearTimeout(labTimer);
  labTimer = setTimeout(runLab, delay);
}

async function runLab() {
  const s = labSettings();
  if (!Number.isInteger(s.depth) || s.depth < 1 || s.depth > 100) { say("lab", "depth must be a whole number from 1 to 100."); return; }
  say("lab", null);
  const t = ticket("lab");
  const cv = $("lab-plot");
  cv.dataset.state = "loading";
  $("lab-setup").textContent = INIT_TEXT[s.init] || "";
  $("lab-summary").textContent = "Simulating…";
  try {
    const r = await api("simulate", { activation: s.fn, params: {}, width: s.width, depth: s.depth, batch: labBatch(s), init: s.init, seed: 0 });
    if (!current("lab", t)) return;
    lab = r;
    lab.settings = JSON.stringify(s);
    drawLab();
    cv.dataset.state = "ready";
  } catch (err) {
    if (!current("lab", t)) return;
    cv.dataset.state = "error";
    $("lab-summary").textContent = "";
    say("lab", err.status === 404 ? "This service does not offer POST simulate: the depth lab needs it." : "Depth lab: " + err.message);
  }
}

const INIT_TEXT = {
  he: "He initialisation: σ_w² = 2, made for relu (it makes up for the half of the signal relu drops).",
  xavier: "Xavier (Glorot) initialisation: σ_w² = 2·width/(fan_in + fan_out) = 1 for these square layers, made for tanh and sigmoid.",
  lecun: "LeCun initialisation: σ_w² = 1, made for selu and tanh.",
  critical: "Critical initialisation: the σ_w at which χ₁ = σ_w²·E[f′(h)²] = 1 for this function (the edge of chaos): gradients neither vanish nor explode.",
};

const LAB_COLORS = { activation: "#1f6fd1", gradient: "#e0761a", dead: "#c92a2a", saturated: "#f59f00" };

function logTicks(lo, hi) {
  const a = Math.floor(Math.log10(lo)), b = Math.ceil(Math.log10(hi));
  const every = Math.max(1, niceStep(b - a, 6));
  const ticks = [];
  for (let k = Math.ceil(a / every) * every; k <= b; k += every) ticks.push(Math.pow(10, k));
  return { lo: Math.pow(10, a), hi: Math.pow(10, b), ticks };
}

function drawLab() {
  if (!lab) return;
  const cv = $("lab-plot");
  const layers = lab.layers;
  const L = layers.length;
  const idx = layers.map(l => l.layer);
  const mf = lab.mean_field || {};
  // Points: what the simulated network did. Lines: the mean-field prediction of the same quantity
  // (it predicts the second moment E[x²], which is the variance plus the squared mean).
  const series = [
    { key: "activation_variance", text: "activation variance Var x (simulated)", kind: "dot", color: LAB_COLORS.activation, values: layers.map(l => l.activation_variance) },
    { key: "activation_second_moment", text: "E[x²] (simulated)", kind: "open", color: LAB_COLORS.activation, values: layers.map(l => l.activation_variance + l.activation_mean * l.activation_mean) },
    { key: "gradient_rms", text: "gradient RMS (simulated)", kind: "square", color: LAB_COLORS.gradient, values: layers.map(l => l.gradient_rms) },
  ];
  const lines = [];
  if (mf.activation_second_moment) lines.push({ key: "mf_activation", text: "E[x²] (mean field)", color: LAB_COLORS.activation, dash: [], values: mf.activation_second_moment });
  if (mf.gradient_rms) lines.push({ key: "mf_gradient", text: "gradient RMS (mean field)", color: LAB_COLORS.gradient, dash: [], values: mf.gradient_rms });
  const all = [...series, ...lines].flatMap(s => s.values).filter(v => Number.isFinite(v) && v > 0);
  const { ctx, width, height } = prepare(cv, 0.45, 260, 420);
  const yr = all.length ? logTicks(Math.min(...all), Math.max(...all)) : { lo: 0.1, hi: 10, ticks: [0.1, 1, 10] };
  if (yr.lo === yr.hi) { yr.lo /= 10; yr.hi *= 10; yr.ticks = [yr.lo, yr.lo * 10, yr.hi]; }
  const xt = niceTicks(1, Math.max(2, L), Math.max(2, Math.min(10, Math.round((width - 80) / 60))));
  const xlo = 0.5, xhi = Math.max(L, 1) + 0.5;
  const { box, px, py } = frame(ctx, width, height,
    { lo: xlo, hi: xhi, ticks: xt.ticks.filter(v => Number.isInteger(v) && v >= 1 && v <= L), label: v => String(v), title: "layer" },
    { lo: yr.lo, hi: yr.hi, ticks: yr.ticks, label: v => power10(Math.round(Math.log10(v))), title: "variance, gradient RMS (log scale)", log: true });
  clip(ctx, box);
  for (const s of lines) {
    const segs = [[]];
    s.values.forEach((v, i) => { if (Number.isFinite(v) && v > 0) segs[segs.length - 1].push([idx[i], v]); else segs.push([]); });
    strokeSegments(ctx, segs, px, py, s.color, s.dash, 2);
  }
  for (const s of series) {
    ctx.fillStyle = s.color;
    const r = L > 60 ? 3 : 4;
    s.values.forEach((v, i) => {
      if (!(Number.isFinite(v) && v > 0)) return;
      const x = px(idx[i]), y = py(v);
      ctx.beginPath();
      if (s.kind === "square") { ctx.rect(x - r + 0.5, y - r + 0.5, 2 * r - 1, 2 * r - 1); ctx.fill(); }
      else if (s.kind === "open") { ctx.arc(x, y, r + 1.5, 0, 2 * Math.PI); ctx.strokeStyle = s.color; ctx.lineWidth = 1.5; ctx.stroke(); }
      else { ctx.arc(x, y, r, 0, 2 * Math.PI); ctx.fill(); }
    });
  }
  ctx.restore();
  setLegend($("lab-legend"), [
    ...series.map(s => ({ key: s.key, kind: s.kind, color: s.color, text: s.text })),
    ...lines.map(s => ({ key: s.key, color: s.color, dash: s.dash, text: s.text })),
  ]);
  cv.dataset.activation = lab.activation;
  cv.dataset.depth = String(L);
  cv.dataset.gradientRms = JSON.stringify(series[2].values);
  cv.dataset.meanFieldGradientRms = JSON.stringify(mf.gradient_rms || []);
  cv.dataset.activationVariance = JSON.stringify(series[0].values);
  cv.dataset.dead = JSON.stringify(layers.map(l => l.dead));
  cv.dataset.saturated = JSON.stringify(layers.map(l => l.saturated));
  cv.dataset.yticks = JSON.stringify(yr.ticks);
  drawFractions();
  summarise();
}

function drawFractions() {
  const cv = $("lab-fractions");
  const layers = lab.layers, L = layers.length;
  const { ctx, width, height } = prepare(cv, 0.22, 170, 230);
  const xt = niceTicks(1, Math.max(2, L), Math.max(2, Math.min(10, Math.round((width - 80) / 60))));
  const { px, py } = frame(ctx, width, height,
    { lo: 0.5, hi: L + 0.5, ticks: xt.ticks.filter(v => Number.isInteger(v) && v >= 1 && v <= L), label: v => String(v), title: "layer" },
    { lo: 0, hi: 1, ticks: [0, 0.5, 1], label: v => (v * 100) + " %", title: "fraction" });
  const slot = (px(2) - px(1));
  const w = Math.max(1, Math.min(10, slot * 0.4));
  layers.forEach(l => {
    const x = px(l.layer);
    ctx.fillStyle = LAB_COLORS.dead; ctx.fillRect(x - w, py(l.dead), w, py(0) - py(l.dead));
    ctx.fillStyle = LAB_COLORS.saturated; ctx.fillRect(x, py(l.saturated), w, py(0) - py(l.saturated));
  });
  setLegend($("lab-fractions-legend"), [
    { key: "dead", kind: "square", color: LAB_COLORS.dead, text: "dead: f′ = 0" },
    { key: "saturated", kind: "square", color: LAB_COLORS.saturated, text: "saturated: |f′| < 0.01" },
  ]);
}

function summarise() {
  const layers = lab.layers, L = layers.length;
  const first = layers[0], last = layers[L - 1];
  const out = $("lab-summary");
  out.textContent = "";
  const g0 = first.gradient_rms, g1 = last.gradient_rms;
  const ratio = g0 / g1;
  let grad;
  if (!(g0 > 0) || !(g1 > 0)) grad = "The gradient vanishes to 0.";
  else if (Math.abs(Math.log10(ratio)) < 1) grad = `The gradient RMS stays within a factor of 10 across the ${L} layers (layer 1: ${fmt(g0, 3)}, layer ${L}: ${fmt(g1, 3)}).`;
  else grad = `The gradient RMS is ${fmt(g1, 3)} at layer ${L} and ${fmt(g0, 3)} at layer 1: ` +
    (ratio < 1 ? `it shrinks by a factor of about ${power10(Math.round(-Math.log10(ratio)))} on its way back, so the first layers hardly learn.`
      : `it grows by a factor of about ${power10(Math.round(Math.log10(ratio)))} on its way back: the first layers get exploding updates.`);
  const mean = k => layers.reduce((s, l) => s + l[k], 0) / L;
  out.append(element("span", {}, grad), " ",
    element("span", {}, `Dead units: ${(100 * mean("dead")).toFixed(1)} % on average; saturated: ${(100 * mean("saturated")).toFixed(1)} %.`),
    " ", element("span", { className: "hint" }, `σ_w = ${fmt(lab.sigma_w)}, σ_b = ${fmt(lab.sigma_b)}, width ${lab.width}, batch ${lab.batch}, seed ${lab.seed}.`));
}

// -- start-up and events ----------------------------------------------------------------------------

async function start() {
  try {
    const data = await api("activations");
    catalog = {};
    select.textContent = "";
    const groups = { elementwise: element("optgroup", { label: "elementwise (Plot)" }), vector: element("optgroup", { label: "vector (Softmax view)" }) };
    const labSelect = labForm.elements.lab_activation;
    labSelect.textContent = "";
    for (const e of data.activations) {
      catalog[e.name] = e;
      (groups[e.kind] || groups.elementwise).appendChild(element("option", { value: e.name }, e.name));
      if (e.kind === "elementwise") labSelect.appendChild(element("option", { value: e.name }, e.name));
    }
    select.append(groups.elementwise, groups.vector);
    labSelect.value = catalog[LAB_DEFAULTS.fn] ? LAB_DEFAULTS.fn : elementwise()[0].name;
    say("catalog", null);
    const v = applyURL();
    showInfo(); showCompare(); showSliders(); smIntro(); clearReadout();
    ready = true;
    setView(v);
    refresh();
  } catch (err) {
    say("catalog", err.message);
  }
}

select.addEventListener("change", () => {
  switchFunction(select.value);
  const kind = entry().kind;
  showCompare();
  setView(kind === "vector" ? "softmax" : "plot");
  refresh();
});

form.addEventListener("input", event => {
  const target = event.target;
  if (target === select || target === compareAdd || !ready) return;
  if (target.name === "compare") showCompare();
  if (target.name === "second") checkSecond();
  refresh();
});
form.addEventListener("submit", event => event.preventDefault());

compareBox.addEventListener("change", event => {
  if (event.target === compareAdd && compareAdd.value) {
    if (compareWith.length < MAX_COMPARE - 1) compareWith.push(compareAdd.value);
    showCompare();
  }
  refresh();
});

apiKey.addEventListener("input", () => {
  localStorage.setItem("activation-api-key", apiKey.value);
  // Without the catalog (the service wants a key and had none) there is nothing to show yet.
  if (ready) refresh(); else start();
});

for (const tab of document.querySelectorAll("[role=tab]")) {
  tab.addEventListener("click", () => { if (ready) chooseTab(tab.dataset.view); });
  tab.addEventListener("keydown", event => {
    const tabs = [...document.querySelectorAll("[role=tab]")];
    const i = tabs.indexOf(tab);
    const j = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[event.key];
    if (j === undefined || !ready) return;
    event.preventDefault();
    const next = tabs[(j + tabs.length) % tabs.length];
    chooseTab(next.dataset.view);
    next.focus();
  });
}

labForm.addEventListener("input", event => {
  const el = labForm.elements;
  if (event.target === el.lab_depth_slider) el.lab_depth.value = el.lab_depth_slider.value;
  if (event.target === el.lab_depth) el.lab_depth_slider.value = el.lab_depth.value;
  writeURL();
  scheduleLab();
});
labForm.addEventListener("submit", event => event.preventDefault());

canvas.addEventListener("pointermove", hover);
canvas.addEventListener("keydown", keyboard);
canvas.addEventListener("focus", () => { if (plot && cursor === null) moveCursor(Math.floor(plot.x.length / 2)); });
let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => { if (view === "plot") draw(); else if (view === "lab" && lab) drawLab(); }, 100);
});
start();
