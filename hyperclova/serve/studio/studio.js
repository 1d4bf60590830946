// hyperclova Studio: a playground over this server's OpenAI-compatible API (no build step).
"use strict";

const $ = (id) => document.getElementById(id);
const PRESETS_KEY = "hyperclova.studio.presets";
const KEY_KEY = "hyperclova.studio.apiKey";
const RANGES = ["max-tokens", "temperature", "top-p", "top-k", "repetition-penalty"];
const state = { config: null, controller: null, tokenTimer: null, tokenSeq: 0 };

// "\n" typed in a one-line field means a line break.
const unescapeText = (s) => s.replace(/\\n/g, "\n").replace(/\\t/g, "\t");

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

async function api(path, body) {
  const res = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(body) });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error((data.error && data.error.message) || res.status + " " + res.statusText);
  return data;
}

function setStatus(text, isError) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", !!isError);
}

// ---- the request ---------------------------------------------------------------------------
function finalPrompt() {
  let p = $("prompt").value;
  if ($("inject-start").checked) p += unescapeText($("start-text").value);
  return p;
}

function stopSequences() {
  return $("stop-seqs").value.split("\n").map(unescapeText).filter((s) => s.length > 0);
}

function requestBody() {
  const body = {
    model: $("model").value || (state.config ? state.config.model : undefined),
    prompt: finalPrompt(),
    max_tokens: Number($("max-tokens").value),
    temperature: Number($("temperature").value),
    top_p: Number($("top-p").value),
    top_k: Number($("top-k").value),
    repetition_penalty: Number($("repetition-penalty").value),
  };
  const stop = stopSequences();
  if (stop.length) body.stop = stop;
  const seed = $("seed").value.trim();
  if (seed !== "") body.seed = Number(seed);
  if ($("show-probs").checked) body.logprobs = 5;
  if ($("use-knowledge").checked) body.retrieve = Number($("retrieve").value);
  return body;
}

// ---- generation (streamed) -----------------------------------------------------------------
async function generate() {
  if (state.controller) return;
  const body = requestBody();
  body.stream = true;
  const out = $("output");
  out.textContent = "";
  $("knowledge-used").hidden = true;
  const controller = (state.controller = new AbortController());
  $("generate").disabled = true;
  $("stop").disabled = false;
  setStatus("generating…");
  let text = "", finish = null, failed = false;
  try {
    const res = await fetch("/v1/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal,
    });
    if (!res.ok) {
      const data = await res.json().catch(() => ({}));
      throw new Error((data.error && data.error.message) || res.status + " " + res.statusText);
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder("utf-8"); // {stream: true} keeps split characters whole
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        if (!event.startsWith("data: ")) continue;
        const data = event.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.knowledge) showKnowledge(chunk.knowledge);
        for (const choice of chunk.choices || []) {
          text += choice.text;
          appendOutput(choice.text, choice.logprobs);
          if (choice.finish_reason) finish = choice.finish_reason;
        }
      }
    }
    setStatus(finish ? "finished: " + finish : "finished");
  } catch (err) {
    if (err.name === "AbortError") setStatus("stopped");
    else { failed = true; setStatus(err.message, true); }
  } finally {
    state.controller = null;
    $("generate").disabled = false;
    $("stop").disabled = true;
  }
  if (!failed && $("inject-restart").checked) {
    $("prompt").value = finalPrompt() + text + unescapeText($("restart-text").value);
    scheduleTokenCount();
  }
}

function stopGeneration() {
  if (state.controller) state.controller.abort();
}

function probColour(p) {
  // high probability: green, low: red; alpha keeps the text readable
  const hue = Math.round(120 * Math.max(0, Math.min(1, p)));
  return `hsla(${hue}, 75%, 50%, 0.28)`;
}

function appendOutput(text, logprobs) {
  if (!text && !logprobs) return;
  const out = $("output");
  if (!$("show-probs").checked || !logprobs) {
    out.append(document.createTextNode(text));
    return;
  }
  const span = document.createElement("span");
  span.className = "tok";
  span.textContent = text;
  const lps = logprobs.token_logprobs.filter((x) => x !== null);
  const p = lps.length ? Math.exp(lps.reduce((a, b) => a + b, 0)) : 1;
  span.style.background = probColour(p);
  span.dataset.prob = p.toFixed(4);
  const alts = (logprobs.top_logprobs || []).filter(Boolean).map((top) =>
    Object.entries(top).map(([t, lp]) => `${JSON.stringify(t)} ${(100 * Math.exp(lp)).toFixed(1)}%`).join("\n"));
  span.dataset.tip = `p = ${(100 * p).toFixed(1)}%` + (alts.length ? "\n" + alts.join("\n—\n") : "");
  out.append(span);
}

function showKnowledge(used) {
  const box = $("knowledge-used");
  box.hidden = !used.length;
  box.textContent = "";
  const h = document.createElement("strong");
  h.textContent = `Injected passages (${used.length})`;
  box.append(h);
  for (const k of used) {
    const div = document.createElement("div");
    div.textContent = `[${k.source}, score ${k.score}] ${k.text}`;
    box.append(div);
  }
}

// ---- live token count and token split ------------------------------------------------------
function scheduleTokenCount() {
  clearTimeout(state.tokenTimer);
  state.tokenTimer = setTimeout(updateTokens, 250);
}

async function updateTokens() {
  const seq = ++state.tokenSeq;
  const prompt = finalPrompt();
  try {
    const data = await api("/v1/tokenize", { prompt });
    if (seq !== state.tokenSeq) return; // an older answer arriving late
    const max = state.config ? state.config.max_model_len : "?";
    $("token-count").textContent = `${data.count} tokens (context ${max})`;
    renderTokens(data.pieces);
  } catch (err) {
    $("token-count").textContent = "tokens: " + err.message;
  }
  updateSnippets();
}

function renderTokens(pieces) {
  // One chip per token; a token holding only the first bytes of a character shows as "·"
  // (the character appears on the token that completes it).
  const view = $("token-view");
  view.hidden = !$("show-tokens").checked;
  if (view.hidden) return;
  view.textContent = "";
  for (const s of pieces) {
    const span = document.createElement("span");
    span.textContent = s === "" ? "·" : s.replace(/\n/g, "↵");
    view.append(span);
  }
}

// ---- few-shot builder (HyperCLOVA §5.2: description, examples, query) ----------------------
function addExample(input = "", output = "") {
  const div = document.createElement("div");
  div.className = "example";
  div.innerHTML = '<textarea class="fs-input" rows="1" placeholder="input"></textarea>' +
    '<textarea class="fs-output" rows="1" placeholder="output"></textarea>' +
    '<button type="button" class="fs-remove">Remove</button>';
  div.querySelector(".fs-input").value = input;
  div.querySelector(".fs-output").value = output;
  div.querySelector(".fs-remove").onclick = () => { div.remove(); updateFewShot(); };
  $("fs-examples").append(div);
  updateFewShot();
}

function fewShotPrompt() {
  const inL = $("fs-in-label").value, outL = $("fs-out-label").value, sep = $("fs-sep").value;
  const parts = [];
  const desc = $("fs-description").value.trim();
  if (desc) parts.push(desc + "\n");
  for (const ex of document.querySelectorAll("#fs-examples .example")) {
    const x = ex.querySelector(".fs-input").value.trim(), y = ex.querySelector(".fs-output").value.trim();
    if (x || y) parts.push(`${inL}: ${x}\n${outL}: ${y}\n${sep}`);
  }
  parts.push(`${inL}: ${$("fs-query").value.trim()}\n${outL}:`);
  return parts.join("\n");
}

function updateFewShot() {
  $("fs-preview").value = fewShotPrompt();
}

function useFewShot() {
  $("prompt").value = fewShotPrompt();
  const sep = $("fs-sep").value;
  if (sep) $("stop-seqs").value = sep;
  showTab("tab-prompt");
  scheduleTokenCount();
}

// ---- code snippets -------------------------------------------------------------------------
function updateSnippets() {
  const body = requestBody();
  const base = location.origin;
  const key = $("api-key").value.trim() ? ' \\\n  -H "Authorization: Bearer $HYPERCLOVA_API_KEY"' : "";
  const json = JSON.stringify(body, null, 2).replace(/'/g, "'\\''");
  $("snippet-curl").textContent =
    `curl ${base}/v1/completions \\\n  -H "Content-Type: application/json"${key} \\\n  -d '${json}'`;
  const extra = { top_k: body.top_k, repetition_penalty: body.repetition_penalty };
  if (body.retrieve) extra.retrieve = body.retrieve;
  const args = [`model=${JSON.stringify(body.model || "")}`, `prompt=${JSON.stringify(body.prompt)}`,
    `max_tokens=${body.max_tokens}`, `temperature=${body.temperature}`, `top_p=${body.top_p}`];
  if (body.stop) args.push(`stop=${JSON.stringify(body.stop)}`);
  if (body.seed !== undefined) args.push(`seed=${body.seed}`);
  if (body.logprobs) args.push(`logprobs=${body.logprobs}`);
  args.push(`extra_body=${JSON.stringify(extra)}`);
  $("snippet-python").textContent =
    `import os\nfrom openai import OpenAI\n\nclient = OpenAI(base_url="${base}/v1", ` +
    `api_key=os.environ.get("HYPERCLOVA_API_KEY", "none"))\n` +
    `resp = client.completions.create(\n    ${args.join(",\n    ")},\n)\nprint(resp.choices[0].text)`;
}

function copySnippet() {
  const pre = document.querySelector(".snippet:not([hidden])");
  navigator.clipboard.writeText(pre.textContent).then(() => setStatus("copied"),
    () => setStatus("copy failed: select the text and copy it", true));
}

// ---- presets (browser localStorage) --------------------------------------------------------
const PRESET_FIELDS = ["model", "prompt", "max-tokens", "temperature", "top-p", "top-k", "repetition-penalty",
  "seed", "stop-seqs", "start-text", "restart-text", "fs-description", "fs-query", "fs-in-label",
  "fs-out-label", "fs-sep"];
const PRESET_CHECKS = ["inject-start", "inject-restart", "show-probs"];

function readPresets() {
  try { return JSON.parse(localStorage.getItem(PRESETS_KEY)) || {}; } catch { return {}; }
}

function refreshPresetList() {
  const list = $("preset-list");
  list.textContent = "";
  for (const name of Object.keys(readPresets()).sort()) {
    const opt = document.createElement("option");
    opt.value = opt.textContent = name;
    list.append(opt);
  }
}

function savePreset() {
  const name = $("preset-name").value.trim();
  if (!name) { setStatus("give the preset a name", true); return; }
  const p = {};
  for (const id of PRESET_FIELDS) p[id] = $(id).value;
  for (const id of PRESET_CHECKS) p[id] = $(id).checked;
  p.examples = [...document.querySelectorAll("#fs-examples .example")].map((ex) =>
    [ex.querySelector(".fs-input").value, ex.querySelector(".fs-output").value]);
  const all = readPresets();
  all[name] = p;
  localStorage.setItem(PRESETS_KEY, JSON.stringify(all));
  refreshPresetList();
  $("preset-list").value = name;
  setStatus(`preset "${name}" saved`);
}

function loadPreset() {
  const name = $("preset-list").value;
  const p = readPresets()[name];
  if (!p) return;
  for (const id of PRESET_FIELDS) if (id in p) $(id).value = p[id];
  for (const id of PRESET_CHECKS) if (id in p) $(id).checked = p[id];
  $("fs-examples").textContent = "";
  for (const [x, y] of p.examples || []) addExample(x, y);
  RANGES.forEach(showRange);
  updateFewShot();
  scheduleTokenCount();
  setStatus(`preset "${name}" loaded`);
}

function deletePreset() {
  const all = readPresets();
  delete all[$("preset-list").value];
  localStorage.setItem(PRESETS_KEY, JSON.stringify(all));
  refreshPresetList();
}

// ---- page wiring ---------------------------------------------------------------------------
function showRange(id) { $(id + "-v").textContent = $(id).value; }

function showTab(id) {
  document.querySelectorAll("[data-tab]").forEach((b) => b.classList.toggle("active", b.dataset.tab === id));
  document.querySelectorAll(".tab-body").forEach((el) => { el.hidden = el.id !== id; });
}

async function loadConfig() {
  try {
    const res = await fetch("/studio/config");
    const cfg = (state.config = await res.json());
    $("model-info").textContent = `${cfg.model} · context ${cfg.max_model_len} · ${cfg.tokenizer}` +
      (cfg.filters ? " · filters on" : "");
    $("max-tokens").max = Math.min(cfg.limits.max_tokens, cfg.max_model_len);
    $("retrieve-box").hidden = !cfg.knowledge;
    // The base model and the tuned adapters served beside it (docs/serve.md), one per request.
    $("model").replaceChildren(...cfg.models.map((m) => {
      const opt = document.createElement("option");
      opt.value = m.id;
      opt.textContent = m.kind === "base" ? m.id : `${m.id} (${m.kind})`;
      return opt;
    }));
    $("model-box").hidden = cfg.models.length < 2;
    if (cfg.auth && !$("api-key").value) setStatus("this server needs an API key", true);
  } catch (err) {
    setStatus("cannot reach the server: " + err.message, true);
  }
  showRange("max-tokens");
}

function init() {
  $("api-key").value = localStorage.getItem(KEY_KEY) || "";
  $("api-key").addEventListener("change", () => {
    localStorage.setItem(KEY_KEY, $("api-key").value.trim());
    scheduleTokenCount();
  });
  RANGES.forEach((id) => {
    showRange(id);
    $(id).addEventListener("input", () => { showRange(id); updateSnippets(); });
  });
  // IME-safe: "input" fires for every committed or composing change and never rewrites the
  // field, so Hangul composition is left alone; shortcuts ignore keys that belong to composition.
  const prompt = $("prompt");
  prompt.addEventListener("input", scheduleTokenCount);
  prompt.addEventListener("compositionend", scheduleTokenCount);
  prompt.addEventListener("keydown", (e) => {
    if (e.isComposing || e.keyCode === 229) return;
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); generate(); }
  });
  for (const id of ["model", "start-text", "inject-start", "seed", "stop-seqs", "show-probs", "use-knowledge", "retrieve"]) {
    $(id).addEventListener("input", () => { updateSnippets(); if (id.includes("start")) scheduleTokenCount(); });
  }
  $("show-tokens").addEventListener("change", updateTokens);
  $("generate").addEventListener("click", generate);
  $("stop").addEventListener("click", stopGeneration);
  document.querySelectorAll("[data-tab]").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  document.querySelectorAll("[data-snippet]").forEach((b) => b.addEventListener("click", () => {
    document.querySelectorAll("[data-snippet]").forEach((x) => x.classList.toggle("active", x === b));
    document.querySelectorAll(".snippet").forEach((pre) => { pre.hidden = pre.id !== b.dataset.snippet; });
  }));
  $("copy-snippet").addEventListener("click", copySnippet);
  for (const id of ["fs-description", "fs-query", "fs-in-label", "fs-out-label", "fs-sep"]) {
    $(id).addEventListener("input", updateFewShot);
  }
  $("fs-examples").addEventListener("input", updateFewShot);
  $("fs-add").addEventListener("click", () => addExample());
  $("fs-use").addEventListener("click", useFewShot);
  $("preset-save").addEventListener("click", savePreset);
  $("preset-load").addEventListener("click", loadPreset);
  $("preset-delete").addEventListener("click", deletePreset);
  const tip = $("prob-tip");
  $("output").addEventListener("mousemove", (e) => {
    const t = e.target.closest(".tok");
    tip.hidden = !t;
    if (t) { tip.textContent = t.dataset.tip; tip.style.left = e.clientX + 12 + "px"; tip.style.top = e.clientY + 12 + "px"; }
  });
  $("output").addEventListener("mouseleave", () => { tip.hidden = true; });
  addExample();
  refreshPresetList();
  loadConfig().then(updateTokens);
}

document.addEventListener("DOMContentLoaded", init);
