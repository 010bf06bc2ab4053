"""The live page: one self-contained HTML file whose script polls ``/state.json`` every second.

Kept as a Python string (not a package data file) so it ships with any install of the package;
no CDN, no external script or font: the page works on a machine without internet, as rigs often are.
The curve is an inline SVG drawn by the script from the JSON.
"""
from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MANGO monitor</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d232b}
 header{background:#1d232b;color:#fff;padding:10px 18px;display:flex;gap:14px;align-items:baseline;flex-wrap:wrap}
 header h1{font-size:17px;margin:0}
 #run{font-family:monospace;opacity:.85}
 .badge{padding:2px 9px;border-radius:10px;font-size:12px;font-weight:600;background:#888;color:#fff}
 .running{background:#2f80ed}.finished{background:#27ae60}.waiting{background:#9b9b9b}.stopped{background:#e67e22}.error{background:#d63031}
 main{display:grid;grid-template-columns:minmax(280px,1fr) 2fr;gap:14px;padding:14px 18px}
 .card{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;padding:12px 14px}
 .card h2{font-size:13px;text-transform:uppercase;letter-spacing:.05em;color:#5a6270;margin:0 0 8px}
 .big{font-size:26px;font-weight:600}
 .big small{font-size:14px;font-weight:400}
 .bar{height:8px;background:#e3e6ea;border-radius:4px;overflow:hidden;margin:6px 0}
 .bar div{height:100%;background:#2f80ed}
 #message{grid-column:1/-1;background:#fff3cd;border:1px solid #f0d58c;border-radius:8px;padding:10px 14px}
 #message.error{background:#fde2e1;border-color:#f5a3a0}
 #message:empty{display:none}
 img.px{image-rendering:pixelated;background:#000;border-radius:4px}
 #mei{width:160px;height:160px}
 #mei:not([src]){visibility:hidden}
 .chips span{display:inline-block;margin:2px 6px 2px 0;padding:2px 8px;border-radius:10px;background:#e3e6ea}
 .chips .ok{background:#d4f3df}.chips .failed,.chips .missing,.chips .malformed{background:#fde2e1}
 .chips .late,.chips .duplicate,.chips .sent{background:#fff3cd}
 #latest{display:grid;grid-template-columns:repeat(auto-fill,minmax(84px,1fr));gap:8px}
 figure{margin:0;text-align:center;font-size:12px}
 figure img{width:72px;height:72px}
 figure.bad img{outline:3px solid #d63031}
 figcaption{font-family:monospace}
 figcaption small{display:block;color:#5a6270}
 svg text{font-size:11px;fill:#5a6270}
 .wide{grid-column:2}
 .muted{color:#5a6270}
</style></head>
<body>
<header><h1>MANGO monitor</h1><span id="run"></span><span id="phase" class="badge">…</span>
 <span id="config" class="muted"></span><span id="updated" class="muted"></span></header>
<main>
 <div id="message"></div>
 <section class="card"><h2>Progress</h2>
  <div class="big"><span id="done">0</span> / <span id="budget">?</span> <small id="unit" class="muted"></small></div>
  <div class="bar"><div id="progress" style="width:0"></div></div>
  <div class="muted"><span id="queries">0</span> queries measured · <span id="finished">not started</span></div>
  <h2 style="margin-top:14px">Trial status</h2><div id="counts" class="chips"></div></section>
 <section class="card"><h2>Best so far</h2>
  <svg id="curve" viewBox="0 0 640 220" width="100%" height="220" role="img" aria-label="best response so far"></svg>
 </section>
 <section class="card"><h2>Current MEI</h2>
  <img id="mei" class="px" alt="most exciting image so far">
  <div class="big" id="best-response">–</div><div id="best-query" class="muted"></div></section>
 <section class="card"><h2>Latest <span id="latest-label"></span></h2><div id="latest"></div></section>
</main>
<script>
"use strict";
const $ = id => document.getElementById(id);
const fmt = v => v === null || v === undefined ? "–" : Number(v).toPrecision(4);
const SVG = ["line", "text", "g", "circle", "polyline"];
function el(tag, attrs, text) {
  const e = SVG.includes(tag) ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function drawCurve(c) {
  const svg = $("curve"); svg.replaceChildren();
  const W = 640, H = 220, L = 48, R = 10, T = 10, B = 26;
  const ys = c.best.concat(c.response).filter(v => v !== null);
  if (!ys.length) return;
  let lo = Math.min(...ys), hi = Math.max(...ys); if (hi === lo) { hi += 0.5; lo -= 0.5; }
  const n = Math.max(...c.query, 1);
  const x = q => L + (W - L - R) * q / n, y = v => T + (H - T - B) * (1 - (v - lo) / (hi - lo));
  svg.append(el("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#aab"}));
  svg.append(el("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#aab"}));
  [lo, (lo + hi) / 2, hi].forEach(v => svg.append(el("text", {x: 4, y: y(v) + 4}, fmt(v))));
  svg.append(el("text", {x: W - R - 90, y: H - 6}, n + " queries"));
  const dots = el("g", {id: "responses", fill: "#9aa7b8"});
  c.query.forEach((q, i) => { if (c.response[i] !== null)
    dots.append(el("circle", {cx: x(q).toFixed(1), cy: y(c.response[i]).toFixed(1), r: 1.6})); });
  svg.append(dots);
  const pts = c.query.map((q, i) => c.best[i] === null ? null : x(q).toFixed(1) + "," + y(c.best[i]).toFixed(1))
    .filter(p => p !== null);
  svg.append(el("polyline", {id: "best-line", points: pts.join(" "), fill: "none", stroke: "#2f80ed",
    "stroke-width": 2}));
}
function render(s) {
  $("run").textContent = s.run;
  $("phase").textContent = s.phase; $("phase").className = "badge " + s.phase;
  $("message").textContent = s.message || ""; $("message").className = s.phase === "error" ? "error" : "";
  $("updated").textContent = s.updated ? "last record " + new Date(s.updated * 1000).toLocaleTimeString() +
    " (" + Math.max(0, Math.round(s.now - s.updated)) + " s ago)" : "";
  if (!s.config) return;
  $("config").textContent = s.kind + " · " + s.config.optimizer + " · " + s.config.generator + " → " +
    s.config.model + " " + s.config.target + " · seed " + s.config.seed;
  $("queries").textContent = s.queries; $("budget").textContent = s.budget;
  $("done").textContent = s.progress.done; $("unit").textContent = s.progress.unit;
  $("progress").style.width = Math.min(100, 100 * s.progress.done / s.budget) + "%";
  $("finished").textContent = s.finished ? "finished" : "unfinished";
  const counts = $("counts"); counts.replaceChildren();
  for (const k in s.counts)
    counts.append(el("span", {class: s.counts[k] ? k : "", "data-status": k}, k + " " + s.counts[k]));
  $("best-response").textContent = fmt(s.best.response);
  $("best-query").textContent = "query " + s.best.query;
  if (!s.images_error && $("mei").getAttribute("src") !== s.best.image) $("mei").setAttribute("src", s.best.image);
  $("latest-label").textContent = s.latest.label;
  const grid = $("latest"); grid.replaceChildren();
  for (const it of s.latest.items) {
    const f = el("figure", {class: it.status === "ok" ? "" : "bad", title: it.id + " · " + it.status});
    if (!s.images_error) f.append(el("img", {class: "px", src: it.image, alt: it.id}));
    const cap = el("figcaption", {}, fmt(it.response) + (it.status === "ok" ? "" : " " + it.status));
    cap.prepend(el("small", {}, it.id));
    f.append(cap);
    grid.append(f);
  }
  if (s.images_error) $("message").textContent = s.images_error;
  drawCurve(s.curve);
}
async function poll() {
  try {
    const r = await fetch("/state.json", {cache: "no-store"});
    render(await r.json());
  } catch (e) {
    $("phase").textContent = "offline"; $("phase").className = "badge error";
    $("message").textContent = "the monitor is not answering (stopped?)";
  }
  setTimeout(poll, 1000);
}
poll();
</script></body></html>
"""
