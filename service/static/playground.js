// The activation playground: plots f, f' (and optionally f'') from the service's own API.
"use strict";

const POINTS = 401;
const form = document.getElementById("controls");
const select = document.getElementById("activation");
const paramsBox = document.getElementById("params");
const canvas = document.getElementById("plot");
const readout = document.getElementById("readout");
const statusLine = document.getElementById("status");
const COLORS = { y: "#1f6fd1", dydx: "#e0761a", d2ydx2: "#2f9e44" };

let catalog = {};
let plot = null; // {x, y, dydx, d2ydx2, box}
let pending = 0;

function headers() {
  const h = { "content-type": "application/json" };
  const key = form.elements.api_key.value || localStorage.getItem("activation-api-key") || "";
  if (key) h.authorization = "Bearer " + key;
  return h;
}

async function api(path, body) {
  const response = await fetch(path, body ? { method: "POST", headers: headers(), body: JSON.stringify(body) } : { headers: headers() });
  const data = await response.json();
  if (!response.ok) throw new Error(data.detail || response.statusText);
  return data;
}

function entry() { return catalog[select.value]; }

function showParams() {
  paramsBox.textContent = "";
  for (const p of entry().params) {
    const label = document.createElement("label");
    label.textContent = p.name;
    label.title = p.description;
    const input = document.createElement("input");
    input.type = "number"; input.step = "any"; input.name = p.name; input.value = p.default;
    if (p.minimum !== null) input.min = p.minimum;
    if (p.maximum !== null) input.max = p.maximum;
    label.appendChild(input);
    paramsBox.appendChild(label);
  }
}

function showInfo() {
  const e = entry();
  document.getElementById("info-name").textContent = e.name + (e.aliases.length ? " (" + e.aliases.join(", ") + ")" : "");
  document.getElementById("info-formula").textContent = e.formula;
  document.getElementById("info-derivative").textContent = e.derivative_formula;
  document.getElementById("info-range").textContent = e.range;
  document.getElementById("info-kinks").textContent = e.kinks.length
    ? e.kinks.map(k => `at ${k.at}: f′ = ${k.derivative} (${k.note})`).join("; ") : "none: smooth";
  document.getElementById("info-use").textContent = e.typical_use.join(", ").replaceAll("_", " ");
  document.getElementById("info-notes").textContent = e.notes.join(" ");
}

function grid() {
  let lo = Number(form.elements.xmin.value), hi = Number(form.elements.xmax.value);
  if (!(hi > lo)) { hi = lo + 1; }
  const xs = [];
  for (let i = 0; i < POINTS; i++) xs.push(lo + (hi - lo) * i / (POINTS - 1));
  return xs;
}

function params() {
  const out = {};
  for (const p of entry().params) {
    const v = Number(form.elements[p.name].value);
    if (Number.isFinite(v)) out[p.name] = v;
  }
  return out;
}

async function update() {
  const ticket = ++pending;
  const e = entry();
  let x = grid();
  if (e.name === "glu") x = x.slice(0, POINTS - 1);
  const body = { activation: e.name, x, params: params() };
  try {
    const calls = [api("activate", body), api("derivative", body)];
    const second = form.elements.second.checked && e.kind === "elementwise";
    if (second) calls.push(api("derivative", { ...body, order: 2 }));
    const [a, d, s] = await Promise.all(calls);
    if (ticket !== pending) return;
    // Vector functions: f is applied to the whole grid as one vector; the plotted
    // derivative is the Jacobian's diagonal dy_i/dx_i.
    const dydx = e.kind === "vector" ? a.y.map((_, i) => d.dydx[i][i]) : d.dydx;
    const xs = e.name === "glu" ? x.slice(0, a.y.length) : x;
    plot = { x: xs, y: a.y, dydx, d2ydx2: s ? s.d2ydx2 : null };
    statusLine.textContent = "";
    canvas.dataset.params = JSON.stringify(a.params);  // what is drawn, for tests and curious readers
    draw();
  } catch (err) {
    if (ticket === pending) statusLine.textContent = err.message;
  }
}

function draw(marker) {
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = Math.round(width * 0.52);
  canvas.width = Math.round(width * dpr); canvas.height = Math.round(height * dpr);
  canvas.style.height = height + "px";
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  if (!plot) return;
  const series = ["y", "dydx", "d2ydx2"].filter(k => plot[k]);
  const values = series.flatMap(k => plot[k]);
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi - lo < 1e-12) { lo -= 1; hi += 1; }
  const pad = (hi - lo) * 0.08; lo -= pad; hi += pad;
  const box = { l: 44, r: width - 10, t: 10, b: height - 26 };
  const x0 = plot.x[0], x1 = plot.x[plot.x.length - 1];
  const px = x => box.l + (x - x0) / (x1 - x0) * (box.r - box.l);
  const py = y => box.b - (y - lo) / (hi - lo) * (box.b - box.t);
  plot.box = box; plot.px = px; plot.py = py;
  ctx.strokeStyle = "#e3e6ea"; ctx.fillStyle = "#5b6473"; ctx.font = "11px system-ui"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4, y = py(v);
    ctx.beginPath(); ctx.moveTo(box.l, y); ctx.lineTo(box.r, y); ctx.stroke();
    ctx.fillText(v.toPrecision(2), 2, y + 4);
    const xv = x0 + (x1 - x0) * i / 4, xx = px(xv);
    ctx.fillText(xv.toPrecision(2), xx - 10, height - 8);
  }
  ctx.strokeStyle = "#9aa3ae";
  if (lo < 0 && hi > 0) { ctx.beginPath(); ctx.moveTo(box.l, py(0)); ctx.lineTo(box.r, py(0)); ctx.stroke(); }
  if (x0 < 0 && x1 > 0) { ctx.beginPath(); ctx.moveTo(px(0), box.t); ctx.lineTo(px(0), box.b); ctx.stroke(); }
  for (const k of series) {
    ctx.strokeStyle = COLORS[k]; ctx.lineWidth = 2.5; ctx.setLineDash(k === "d2ydx2" ? [6, 4] : []);
    ctx.beginPath();
    plot[k].forEach((v, i) => (i ? ctx.lineTo(px(plot.x[i]), py(v)) : ctx.moveTo(px(plot.x[i]), py(v))));
    ctx.stroke();
  }
  ctx.setLineDash([]);
  canvas.dataset.curves = String(series.length);
  canvas.dataset.activation = entry().name;
  if (marker !== undefined) {
    ctx.strokeStyle = "#1d2330"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(px(plot.x[marker]), box.t); ctx.lineTo(px(plot.x[marker]), box.b); ctx.stroke();
  }
}

function hover(event) {
  if (!plot || !plot.box) return;
  const rect = canvas.getBoundingClientRect();
  const cx = event.clientX - rect.left;
  const t = (cx - plot.box.l) / (plot.box.r - plot.box.l);
  const i = Math.max(0, Math.min(plot.x.length - 1, Math.round(t * (plot.x.length - 1))));
  const parts = [`x = ${plot.x[i]}`, `f(x) = ${plot.y[i]}`, `f′(x) = ${plot.dydx[i]}`];
  if (plot.d2ydx2) parts.push(`f″(x) = ${plot.d2ydx2[i]}`);
  readout.textContent = parts.join("   ");
  readout.dataset.x = String(plot.x[i]);
  readout.dataset.y = String(plot.y[i]);
  readout.dataset.dydx = String(plot.dydx[i]);
  draw(i);
}

async function start() {
  try {
    const data = await api("activations");
    select.textContent = "";
    for (const e of data.activations) {
      catalog[e.name] = e;
      const option = document.createElement("option");
      option.value = e.name; option.textContent = e.name;
      select.appendChild(option);
    }
    select.value = "sigmoid";
    showParams(); showInfo(); await update();
  } catch (err) {
    statusLine.textContent = err.message;
  }
}

select.addEventListener("change", () => { showParams(); showInfo(); update(); });
form.addEventListener("input", event => {
  if (event.target === select) return;
  if (event.target.name === "api_key") localStorage.setItem("activation-api-key", event.target.value);
  // Without the catalog (the service wants a key and had none) there is nothing to plot yet.
  if (entry()) update(); else start();
});
form.addEventListener("submit", event => event.preventDefault());
canvas.addEventListener("pointermove", hover);
window.addEventListener("resize", () => draw());
start();
