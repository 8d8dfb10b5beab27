// The bushu playground: lists the loaded models and lets a person try each one, with the
// answer, its latency and its explanation. Plain DOM, no library; every value from the server
// is written with textContent, never parsed as HTML.
"use strict";

const $ = (root, selector) => root.querySelector(selector);
let token = sessionStorage.getItem("bushu-token") || "";

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers.Authorization = "Bearer " + token;
  const started = performance.now();
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const ms = performance.now() - started;
  const body = (response.headers.get("content-type") || "").includes("json") ? await response.json() : null;
  if (!response.ok) {
    const error = new Error((body && body.error) || response.status + " " + response.statusText);
    error.status = response.status;
    throw error;
  }
  return { body, ms };
}

const postJSON = (path, doc) =>
  api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(doc) });

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function bars(entries) { // [[name, value in 0..1, shown]]
  const list = el("ul", null, "bars");
  for (const [name, value, shown] of entries) {
    const row = el("li");
    const bar = el("span", null, "bar");
    const fill = el("i");
    fill.style.width = Math.max(0, Math.min(1, value)) * 100 + "%";
    bar.append(fill);
    row.append(el("span", name), bar, el("span", shown));
    list.append(row);
  }
  return list;
}

function showError(card, error) {
  const p = $(card, ".error");
  p.textContent = error ? "error: " + error.message : "";
  p.hidden = !error;
}

const ms = (value) => value.toFixed(value < 10 ? 1 : 0) + " ms";

// Token scores as highlights: green pushes towards the answer (or "positive"), red against.
function tokens(target, list, key) {
  target.replaceChildren();
  const scale = Math.max(1e-9, ...list.filter((t) => !t.special).map((t) => Math.abs(t[key])));
  for (const t of list) {
    const span = el("span", t.token, "token" + (t.special ? " special" : ""));
    const strength = Math.abs(t[key]) / scale;
    const colour = t[key] >= 0 ? "22, 163, 74" : "220, 38, 38";
    span.style.backgroundColor = `rgba(${colour}, ${(0.85 * strength).toFixed(3)})`;
    span.title = `${key} ${t[key].toFixed(4)}`;
    span.dataset.score = t[key];
    target.append(span, " ");
  }
}

function why(explanation) {
  const parts = [explanation.method.replaceAll("_", " ")];
  if (explanation.convergence_delta !== undefined) parts.push("convergence delta " + explanation.convergence_delta.toExponential(1));
  if (explanation.steps) parts.push(explanation.steps + " steps");
  parts.push("explained in " + ms(explanation.explain_ms));
  return parts.join(" · ");
}

function note(container, explanation) {
  if (explanation.note) container.append(el("p", explanation.note, "note"));
}

function classifierAnswer(card, answer, latency) {
  const box = $(card, ".answer");
  box.replaceChildren(el("p", answer.label, "label"));
  const probabilities = answer.probabilities || {};
  box.append(bars(answer.top_k.map((t) => [t.label, t.score, (probabilities[t.label] ?? t.score).toFixed(3)])));
  box.append(el("p", "predict " + ms(latency) + " round trip", "latency"));
}

async function explainInto(card, run) {
  const box = $(card, ".explanation");
  const caption = $(card, ".why");
  box.hidden = false;
  caption.textContent = "explaining…";
  try {
    const { body } = await run();
    return body;
  } catch (error) {
    caption.textContent = "";
    showError(card, error);
    return null;
  }
}

// -- one renderer per kind of model -------------------------------------------------------

function imageCard(card, model) {
  const canvas = $(card, "canvas.draw");
  const ctx = canvas.getContext("2d");
  let upload = null;
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height); upload = null; };
  clear();
  let drawing = false;
  const at = (e) => { const r = canvas.getBoundingClientRect(); return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height]; };
  canvas.addEventListener("pointerdown", (e) => { drawing = true; upload = null; ctx.beginPath(); ctx.moveTo(...at(e)); canvas.setPointerCapture(e.pointerId); });
  canvas.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    ctx.strokeStyle = "#fff"; ctx.lineWidth = 18; ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.lineTo(...at(e)); ctx.stroke();
  });
  const stop = () => { if (drawing) { drawing = false; run(); } };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointerleave", stop);
  $(card, ".clear").addEventListener("click", () => { clear(); $(card, ".answer").replaceChildren(); $(card, ".explanation").hidden = true; });

  // A drawing goes small first (the model was trained on 8×8 digits scaled up), as a PNG.
  const drawingPng = () => new Promise((resolve) => {
    const small = document.createElement("canvas");
    small.width = small.height = 8;
    const sctx = small.getContext("2d");
    sctx.imageSmoothingQuality = "high";
    sctx.drawImage(canvas, 0, 0, 8, 8);
    small.toBlob(resolve, "image/png");
  });

  $(card, ".file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (!file) return;
    upload = file;
    const bitmap = await createImageBitmap(file);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    await run();
  });

  async function run() {
    showError(card, null);
    const blob = upload || await drawingPng();
    const send = (path) => api(path, { method: "POST", headers: { "Content-Type": blob.type || "image/png" }, body: blob });
    try {
      const { body, ms: latency } = await send(`/v1/models/${encodeURIComponent(model.name)}/predict`);
      classifierAnswer(card, body, latency);
    } catch (error) { showError(card, error); return; }
    if (!model.explain) return;
    const explanation = await explainInto(card, () => send(`/v1/models/${encodeURIComponent(model.name)}/explain`));
    if (!explanation) return;
    $(card, "img.overlay").src = "data:image/png;base64," + explanation.overlay_png;
    const caption = $(card, ".why");
    caption.textContent = `why "${explanation.target}": red pixels pushed for it, blue against · ` + why(explanation);
    note(caption, explanation);
  }
  $(card, ".run").addEventListener("click", run);
}

function textCard(card, model) {
  const path = (route) => `/v1/models/${encodeURIComponent(model.name)}/${route}`;
  $(card, "form.ask").addEventListener("submit", async (e) => {
    e.preventDefault();
    showError(card, null);
    const text = $(card, "textarea.text").value;
    try {
      const { body, ms: latency } = await postJSON(path("predict"), { text });
      classifierAnswer(card, body, latency);
    } catch (error) { showError(card, error); return; }
    if (!model.explain) return;
    const explanation = await explainInto(card, () => postJSON(path("explain"), { text }));
    if (!explanation) return;
    const polar = explanation.tokens.length && explanation.tokens[0].polarity !== undefined;
    tokens($(card, ".tokens"), explanation.tokens, polar ? "polarity" : "score");
    const caption = $(card, ".why");
    caption.textContent = (polar ? "green words push towards positive, red towards negative · "
      : `green words push towards "${explanation.target}", red against · `) + why(explanation);
    note(caption, explanation);
  });
}

function embeddingCard(card, model) {
  const path = (route) => `/v1/models/${encodeURIComponent(model.name)}/${route}`;
  $(card, "form.ask").addEventListener("submit", async (e) => {
    e.preventDefault();
    showError(card, null);
    const query = $(card, "input.query").value;
    const corpus = $(card, "textarea.corpus").value.split("\n").map((s) => s.trim()).filter(Boolean);
    const k = Number($(card, "input.k").value) || 3;
    let best;
    try {
      const { body, ms: latency } = await postJSON(path("search"), { query, corpus, k });
      const box = $(card, ".answer");
      box.replaceChildren(bars(body.results.map((r) => [`#${r.index}`, r.score, r.score.toFixed(3)])));
      const list = el("ol");
      for (const r of body.results) list.append(el("li", r.text));
      box.append(list, el("p", "search " + ms(latency) + " round trip", "latency"));
      best = body.results[0];
    } catch (error) { showError(card, error); return; }
    if (!model.explain || !best) return;
    const explanation = await explainInto(card, () => postJSON(path("explain"), { text: best.text, query }));
    if (!explanation) return;
    tokens($(card, ".tokens"), explanation.tokens, "score");
    const caption = $(card, ".why");
    caption.textContent = "why the best match matches the query: green words raised its similarity, red lowered it · " + why(explanation);
    note(caption, explanation);
  });
}

function recommendationCard(card, model) {
  const path = (route) => `/v1/models/${encodeURIComponent(model.name)}/${route}`;
  if (model.users) $(card, "input.user").max = model.users - 1;
  $(card, "form.ask").addEventListener("submit", async (e) => {
    e.preventDefault();
    showError(card, null);
    const doc = { user: Number($(card, "input.user").value), k: Number($(card, "input.k").value) || 5 };
    try {
      const { body, ms: latency } = await postJSON(path("predict"), doc);
      const top = Math.max(1e-9, ...body.items.map((i) => Math.abs(i.score)));
      $(card, ".answer").replaceChildren(bars(body.items.map((i) => [`item ${i.item}`, i.score / top, i.score.toFixed(3)])),
        el("p", "predict " + ms(latency) + " round trip", "latency"));
    } catch (error) { showError(card, error); return; }
    if (!model.explain) return;
    const explanation = await explainInto(card, () => postJSON(path("explain"), doc));
    if (!explanation) return;
    const table = $(card, "table.factors");
    table.replaceChildren();
    const head = el("tr");
    for (const h of ["item", "score", "bias", "factor contributions", "similar seen items (context)"]) head.append(el("th", h));
    table.append(head);
    const scale = Math.max(1e-9, ...explanation.items.flatMap((i) => i.factors.map(Math.abs)));
    for (const item of explanation.items) {
      const row = el("tr");
      const cell = el("td");
      item.factors.forEach((value, f) => {
        const barPart = el("span", null, "f");
        barPart.style.height = (4 + 20 * Math.abs(value) / scale).toFixed(1) + "px";
        barPart.style.backgroundColor = value >= 0 ? "#16a34a" : "#dc2626";
        barPart.title = `factor ${f}: ${value.toFixed(3)}`;
        cell.append(barPart);
      });
      row.append(el("td", item.item), el("td", item.score.toFixed(3)), el("td", item.bias.toFixed(3)), cell,
        el("td", item.similar_seen.map((s) => s.item).join(", ")));
      table.append(row);
    }
    const caption = $(card, ".why");
    caption.textContent = "score = Σ user factor × item factor + item bias; each bar is one factor's share · " + why(explanation);
    note(caption, explanation);
  });
}

function tensorsCard(card, model) {
  $(card, ".route").textContent = `POST /v2/models/${model.name}/infer`;
}

// Server-sent events of a streamed completion: calls onEvent with each `data:` object, in order.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (line.startsWith("data: ") && line !== "data: [DONE]") onEvent(JSON.parse(line.slice(6)));
      }
    }
  }
}

function generationCard(card, model) {
  const path = `/v1/models/${encodeURIComponent(model.name)}/predict`;
  $(card, "form.ask").addEventListener("submit", async (e) => {
    e.preventDefault();
    showError(card, null);
    const out = $(card, ".completion");
    const stats = $(card, ".latency");
    out.textContent = "";
    stats.textContent = "";
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    const doc = { text: $(card, "textarea.prompt").value, max_tokens: Number($(card, "input.max").value) || 32, stream: true };
    const started = performance.now();
    let first = null, events = 0;
    try {
      const response = await fetch(path, { method: "POST", headers, body: JSON.stringify(doc) });
      if (!response.ok) {
        const body = await response.json().catch(() => null);
        throw new Error((body && body.error) || response.status + " " + response.statusText);
      }
      await readEvents(response, (event) => {
        if (event.error) throw new Error(event.error);
        if (first === null) first = performance.now() - started;
        events += 1;
        out.textContent += event.text || "";
      });
    } catch (error) { showError(card, error); return; }
    stats.textContent = `first token ${ms(first || 0)} · ${events} events · ${ms(performance.now() - started)} in all`;
    card.dataset.done = "true";
  });
}

const RENDERERS = { image: imageCard, text: textCard, embedding: embeddingCard, recommendation: recommendationCard,
  tensors: tensorsCard, generation: generationCard };

async function loadModels() {
  const status = document.getElementById("status");
  const holder = document.getElementById("models");
  try {
    const { body } = await api("/v1/catalog");
    holder.replaceChildren();
    document.getElementById("server").textContent = `${body.server} · ${body.models.length} model(s)`;
    for (const model of body.models) {
      const card = document.getElementById("tpl-" + model.kind).content.firstElementChild.cloneNode(true);
      card.id = "model-" + model.name;
      card.dataset.kind = model.kind;
      $(card, ".title").textContent = model.name;
      $(card, ".meta").textContent = [`version ${model.version}`, model.task, `variant ${model.variant}`,
        model.explain ? "explained by " + model.explain : "no explanations"].join(" · ");
      RENDERERS[model.kind](card, model);
      holder.append(card);
    }
    status.textContent = body.models.length ? "" : "no models are loaded";
    status.hidden = body.models.length > 0;
    return true;
  } catch (error) {
    status.hidden = false;
    status.textContent = error.status === 401 || error.status === 403
      ? "this server needs a bearer token with the infer scope: enter it above" : "could not list the models: " + error.message;
    return false;
  }
}

// -- the live panel: req/s and p50/p99 from the server's latency histogram --------------

const history = [];
let previous = null;

function quantile(buckets, q) { // buckets: [[upper bound, count in this interval]] of cumulative counts' deltas
  const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
  if (!total) return null;
  let lower = 0, below = 0;
  for (const [upper, cumulative] of buckets) {
    if (cumulative >= q * total) {
      if (upper === null) return lower; // the +Inf bucket

      const inside = cumulative - below;
      return lower + (upper - lower) * (inside ? (q * total - below) / inside : 0);
    }
    lower = upper; below = cumulative;
  }
  return lower;
}

async function poll() {
  try {
    const { body } = await api("/v1/stats");
    if (previous) {
      const seconds = Math.max(1e-3, body.time - previous.time);
      const deltas = body.buckets.map(([le, count], i) => [le, count - (previous.buckets[i] ? previous.buckets[i][1] : 0)]);
      const count = body.count - previous.count;
      history.push({ rps: count / seconds, p50: quantile(deltas, 0.5), p99: quantile(deltas, 0.99) });
      if (history.length > 60) history.shift();
      drawChart();
    }
    previous = body;
  } catch (error) { /* the models list says what is wrong */ }
}

function drawChart() {
  const canvas = document.getElementById("chart");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 28, top = 24; // the scale labels sit above the plot
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "#d8dde2"; ctx.lineWidth = 1;
  ctx.strokeRect(pad, top, w - 2 * pad, h - pad - top);
  const maxRps = Math.max(1, ...history.map((p) => p.rps));
  const maxMs = Math.max(1, ...history.map((p) => (p.p99 || 0) * 1000));
  const x = (i) => pad + (w - 2 * pad) * ((i + 60 - history.length) / 59); // the newest on the right
  const line = (values, max, colour) => {
    ctx.strokeStyle = ctx.fillStyle = colour; ctx.lineWidth = 2; ctx.beginPath();
    let started = false;
    values.forEach((v, i) => {
      if (v === null) { started = false; return; }
      const y = top + (h - pad - top) * (1 - v / max);
      if (started) ctx.lineTo(x(i), y); else { ctx.moveTo(x(i), y); started = true; }
    });
    ctx.stroke();
    const last = values.length - 1; // the newest point as a dot, so one sample shows too
    if (last >= 0 && values[last] !== null) {
      ctx.beginPath(); ctx.arc(x(last), top + (h - pad - top) * (1 - values[last] / max), 3, 0, 2 * Math.PI); ctx.fill();
    }
  };
  line(history.map((p) => p.rps), maxRps, "#1d232a");
  line(history.map((p) => (p.p50 === null ? null : p.p50 * 1000)), maxMs, "#16a34a");
  line(history.map((p) => (p.p99 === null ? null : p.p99 * 1000)), maxMs, "#b3261e");
  ctx.fillStyle = "#5b6670"; ctx.font = "11px system-ui";
  ctx.fillText(`${maxRps.toFixed(1)} req/s`, pad + 4, 18);
  ctx.fillText(`${maxMs.toFixed(1)} ms`, w - pad - 60, 18);
  ctx.fillText("last 60 s", pad + 4, h - 8);
  const last = history[history.length - 1];
  if (!last) return;
  const fmt = (s) => (s === null ? "–" : ms(s * 1000));
  document.getElementById("live-numbers").textContent =
    `now: ${last.rps.toFixed(1)} req/s · p50 ${fmt(last.p50)} (green) · p99 ${fmt(last.p99)} (red) · req/s in black`;
}

let polling = null;
async function start() { // the live panel polls only once the models could be listed (a token, if asked for)
  if (await loadModels() && polling === null) {
    drawChart();
    poll();
    polling = setInterval(poll, 1000);
  }
}

document.getElementById("token").value = token;
document.getElementById("auth").addEventListener("submit", (e) => {
  e.preventDefault();
  token = document.getElementById("token").value.trim();
  sessionStorage.setItem("bushu-token", token);
  previous = null;
  start();
});
start();
