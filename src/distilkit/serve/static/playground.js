// The distilkit playground: list the served models (GET /v1/models), build the task's form, send
// it through the JSON API a client uses (POST /models/{name}) and show the answer, the raw
// request/response, the Server-Timing entries and the equivalent curl command.
import {RENDERERS, el, parseServerTiming} from "./render.js";

const $ = (id) => document.getElementById(id);
const KEY = "distilkit-api-key";  // sessionStorage: the key lives as long as this browser tab

// The model cards' samples; fill-mask samples apply to the models with that mask token.
const SAMPLES = {
  "fill-mask": [
    {title: "distilbert-base-cased card", mask: "[MASK]", inputs: {text: "Paris is [MASK] of France"}},
    {title: "distilroberta-base card", mask: "<mask>", inputs: {text: "Paris is the <mask> of France."},
      parameters: {top_k: 2}},
    {title: "distilroberta-base card (2)", mask: "<mask>", inputs: {text: "Today is a <mask> day!"},
      parameters: {top_k: 2}},
  ],
  "question-answering": [
    {title: "John, Seattle", inputs: {question: "What is my name?",
      context: "My name is John and I live in Seattle."}},
    {title: "Ravi, Hyderabad", inputs: {question: "Where do I live?",
      context: "My name is Ravi and I live in Hyderabad."}},
  ],
  "text-classification": [
    {title: "Sentiment", inputs: {text: "I like you. I love you", text_pair: ""},
      parameters: (model) => ({top_k: (model.labels || []).length || 1})},
    {title: "Sentence pair", inputs: {text: "A man is playing a guitar.", text_pair: "A person plays music."},
      parameters: (model) => ({top_k: (model.labels || []).length || 1})},
  ],
  "token-classification": [
    {title: "Names and places", inputs: {text: "My name is Wolfgang and I live in Berlin."},
      parameters: {aggregation_strategy: "simple"}},
  ],
};

// The form of each task: its text fields, in the order of the Hugging Face inputs.
const FIELDS = {
  "fill-mask": [{name: "text", label: "Text (with the mask token)", rows: 3, mask: true}],
  "question-answering": [{name: "question", label: "Question", rows: 1},
    {name: "context", label: "Context", rows: 5}],
  "text-classification": [{name: "text", label: "Text", rows: 3},
    {name: "text_pair", label: "Text pair (optional)", rows: 2}],
  "token-classification": [{name: "text", label: "Text", rows: 4}],
};

const state = {models: [], model: null, busy: false, runs: 0};

// --- talking to the server -------------------------------------------------------------------------
async function callApi(method, path, body) {
  const headers = {accept: "application/json"};
  if (body !== undefined) headers["content-type"] = "application/json";
  const key = sessionStorage.getItem(KEY);
  if (key) headers.authorization = `Bearer ${key}`;
  const started = performance.now();
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const response = await fetch(path, {method, headers, body: payload});
  const text = await response.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return {status: response.status, ok: response.ok, statusText: response.statusText, text, json,
    ms: performance.now() - started, timing: response.headers.get("server-timing")};
}

/** The server's `{"error": {"code", "message"}}`, or what else came back, as one line. */
function errorOf(res) {
  const error = res.json && res.json.error;
  if (error && typeof error === "object") {
    return {code: error.code || "error", message: String(error.message)};
  }
  return {code: res.statusText || "error", message: res.text ? res.text.slice(0, 500) : `HTTP ${res.status}`};
}

function showError(status, code, message) {
  const box = $("error");
  box.replaceChildren(el("strong", {}, status ? `${status} ${code}` : code), " ", message);
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").replaceChildren();
}

// --- models ----------------------------------------------------------------------------------------
async function loadModels() {
  $("notice").textContent = "Loading the served models…";
  let res;
  try {
    res = await callApi("GET", "/v1/models");
  } catch (err) {
    $("notice").textContent = `Could not reach the server: ${err.message}`;
    return;
  }
  if (res.status === 401) {
    askForKey(errorOf(res).message);
    return;
  }
  if (!res.ok || !res.json || !Array.isArray(res.json.models)) {
    const {code, message} = errorOf(res);
    $("notice").textContent = `GET /v1/models failed: ${res.status} ${code}: ${message}`;
    return;
  }
  $("notice").textContent = "";
  state.models = res.json.models;
  const select = $("model");
  select.replaceChildren(...state.models.map((m) => el("option", {value: m.name}, `${m.name} (${m.task})`)));
  select.disabled = false;
  const wanted = decodeURIComponent(location.hash.slice(1));
  select.value = state.models.some((m) => m.name === wanted) ? wanted : state.models[0].name;
  pickModel(select.value);
}

function askForKey(message) {
  $("auth").hidden = false;
  $("notice").textContent = message ? `The server answered 401: ${message}` : "";
  $("api-key").focus();
}

function pickModel(name) {
  state.model = state.models.find((m) => m.name === name);
  if (!state.model) return;
  history.replaceState(null, "", `#${encodeURIComponent(name)}`);
  const m = state.model;
  const facts = [`task ${m.task}`, m.mask_token && `mask token ${m.mask_token}`,
    m.source && `from ${m.source}`, m.dtype && m.device && `${m.dtype} on ${m.device}`,
    m.labels && `labels ${m.labels.join(", ")}`];
  $("model-info").textContent = facts.filter(Boolean).join(" · ");
  $("route").textContent = `POST ${routeOf(m)}`;
  buildFields(m);
  buildParams(m);
  buildSamples(m);
  $("run").disabled = false;
}

const routeOf = (model) => `/models/${encodeURIComponent(model.name)}`;

// --- the form --------------------------------------------------------------------------------------
function fieldsOf(model) {
  return FIELDS[model.task] || [{name: "text", label: "Text", rows: 3}];
}

function buildFields(model) {
  const box = $("fields");
  box.replaceChildren();
  for (const f of fieldsOf(model)) {
    const id = `field-${f.name}`;
    const input = f.rows > 1 ? el("textarea", {id, name: f.name, rows: f.rows, spellcheck: "false"})
      : el("input", {id, name: f.name, type: "text", spellcheck: "false"});
    const wrap = el("div", {class: "field"}, el("label", {for: id}, f.label), input);
    if (f.mask && model.mask_token) {
      const button = el("button", {type: "button", class: "secondary", id: "insert-mask"},
        `Insert ${model.mask_token}`);
      button.addEventListener("click", () => insertAtCursor(input, model.mask_token));
      wrap.append(el("div", {class: "row"}, button,
        el("span", {class: "hint"}, `this model's mask token is ${model.mask_token}`)));
    }
    box.append(wrap);
  }
}

function insertAtCursor(input, token) {
  const {selectionStart: start, selectionEnd: end, value} = input;
  input.value = value.slice(0, start) + token + value.slice(end);
  input.focus();
  input.setSelectionRange(start + token.length, start + token.length);
}

const unset = (p) => p.default === null || p.default === undefined;
const shownDefault = (p) => (unset(p) ? "auto" : JSON.stringify(p.default));

function paramControl(p, id) {
  const shown = shownDefault(p);
  if (p.type === "boolean" || p.choices) {
    const options = p.choices || ["true", "false"];
    return el("select", {id, name: p.name}, el("option", {value: ""}, `default (${shown})`),
      options.map((c) => el("option", {value: c}, c)));
  }
  if (p.type === "integer") {
    return el("input", {id, name: p.name, type: "number", step: 1, inputmode: "numeric", placeholder: shown});
  }
  const hint = p.type === "strings" ? "comma-separated" : "";
  return el("input", {id, name: p.name, type: "text", spellcheck: "false",
    placeholder: [shown, hint].filter(Boolean).join("; ")});
}

function buildParams(model) {
  const box = $("params");
  box.replaceChildren();
  for (const p of model.parameters || []) {
    const id = `param-${p.name}`;
    const hint = unset(p) ? "default: set by the server" : `default: ${shownDefault(p)}`;
    box.append(el("div", {class: "field param"}, el("label", {for: id}, p.name), paramControl(p, id),
      el("span", {class: "hint"}, hint)));
  }
  $("params-box").hidden = !(model.parameters || []).length;
}

function buildSamples(model) {
  const samples = samplesFor(model);
  const box = $("samples");
  box.replaceChildren(samples.length ? el("span", {class: "hint"}, "Samples:") : "");
  samples.forEach((sample, i) => {
    const button = el("button", {type: "button", class: "secondary sample"}, sample.title);
    button.addEventListener("click", () => applySample(model, sample));
    box.append(button);
    if (i === 0) applySample(model, sample);
  });
}

function samplesFor(model) {
  const all = SAMPLES[model.task] || [];
  if (model.task !== "fill-mask") return all;
  const own = all.filter((s) => s.mask === model.mask_token);
  if (own.length || !model.mask_token || !all.length) return own;
  // Another mask token: the first card's sample written with this model's token.
  const text = all[0].inputs.text.replaceAll(all[0].mask, model.mask_token);
  return [{...all[0], title: "card sample", inputs: {text}}];
}

function applySample(model, sample) {
  for (const [name, value] of Object.entries(sample.inputs)) {
    const input = $(`field-${name}`);
    if (input) input.value = value;
  }
  const params = typeof sample.parameters === "function" ? sample.parameters(model) : sample.parameters || {};
  for (const p of model.parameters || []) {
    const control = $(`param-${p.name}`);
    const value = params[p.name];
    control.value = value === undefined ? "" : Array.isArray(value) ? value.join(", ") : String(value);
  }
}

/** The Hugging Face inference body for the form: {"inputs": ..., "parameters": {only those set}}. */
function requestBody(model) {
  const value = (name) => ($(`field-${name}`) || {value: ""}).value;
  let inputs = value("text");
  if (model.task === "question-answering") inputs = {question: value("question"), context: value("context")};
  if (model.task === "text-classification" && value("text_pair") !== "") {
    inputs = {text: value("text"), text_pair: value("text_pair")};
  }
  const parameters = {};
  for (const p of model.parameters || []) {
    const raw = $(`param-${p.name}`).value.trim();
    if (raw === "") continue;
    if (p.type === "integer") parameters[p.name] = Number(raw);
    else if (p.type === "boolean") parameters[p.name] = raw === "true";
    else if (p.type === "strings") parameters[p.name] = raw.split(",").map((s) => s.trim()).filter(Boolean);
    else parameters[p.name] = raw;
  }
  return Object.keys(parameters).length ? {inputs, parameters} : {inputs};
}

// --- running a request -----------------------------------------------------------------------------
async function run(event) {
  event.preventDefault();
  const model = state.model;
  if (!model || state.busy) return;
  const path = routeOf(model);
  const body = requestBody(model);
  state.busy = true;
  $("run").disabled = true;
  $("output").setAttribute("aria-busy", "true");
  clearError();
  showRequest(path, body);
  try {
    const res = await callApi("POST", path, body);
    showResponse(res);
    if (res.ok) renderAnswer(model, body, res);
    else failed(res);
  } catch (err) {
    $("result").replaceChildren();
    showError(0, "network error", `could not reach the server: ${err.message}`);
  } finally {
    state.busy = false;
    state.runs += 1;
    $("run").disabled = false;
    $("output").removeAttribute("aria-busy");
    $("output").dataset.runs = String(state.runs);  // lets scripts (and tests) wait for an answer
    revealOutput();
  }
}

/** On one column (phones) the answer is below the form: bring its top into view if it is not. */
function revealOutput() {
  if (document.activeElement === $("api-key")) return;  // a 401 asked for the key: stay there
  const top = $("output").getBoundingClientRect().top;
  if (top < 0 || top > window.innerHeight - 80) $("output").scrollIntoView({block: "start"});
}

function failed(res) {
  const {code, message} = errorOf(res);
  $("result").replaceChildren();
  showError(res.status, code, message);
  if (res.status === 401) askForKey(message);
}

function renderAnswer(model, body, res) {
  const render = RENDERERS[model.task];
  try {
    const nodes = render ? render(res.json, body, model) : [el("p", {}, "See the raw response below.")];
    $("result").replaceChildren(...nodes);
  } catch (err) {
    $("result").replaceChildren(el("p", {}, "The answer is in the raw response below."));
    showError(0, "display error", `could not render this answer: ${err.message}`);
  }
}

function showRequest(path, body) {
  $("request-line").textContent = `POST ${path}`;
  $("request-json").textContent = JSON.stringify(body, null, 2);
  $("curl").textContent = curlCommand(path, body);
  $("copy-curl").disabled = false;
  $("copy-status").textContent = "";
  $("response-line").textContent = "…";
  $("response-json").textContent = "";
  $("timing").replaceChildren();
}

function showResponse(res) {
  $("response-line").textContent = `${res.status} ${res.statusText}`.trim();
  $("response-json").textContent = res.json === undefined ? res.text : JSON.stringify(res.json, null, 2);
  const entries = parseServerTiming(res.timing).map((t) => el("span", {class: "timing-entry"},
    el("span", {class: "timing-name"}, t.name), ` ${Number.isFinite(t.dur) ? formatMs(t.dur) : ""}`,
    t.desc ? ` (${t.desc})` : ""));
  $("timing").replaceChildren(el("span", {class: "hint"}, "Server-Timing:"),
    ...(entries.length ? entries : [el("span", {class: "timing-entry"}, "none")]),
    el("span", {class: "timing-entry browser"}, `round trip in the browser ${formatMs(res.ms)}`));
}

const formatMs = (ms) => `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;

// --- curl ------------------------------------------------------------------------------------------
const shellQuote = (s) => `'${s.replaceAll("'", "'\\''")}'`;

function curlCommand(path, body) {
  const parts = [`curl -s ${shellQuote(location.origin + path)}`, "-H 'content-type: application/json'"];
  if (sessionStorage.getItem(KEY)) parts.push('-H "authorization: Bearer $DISTILKIT_API_KEY"');
  parts.push(`-d ${shellQuote(JSON.stringify(body))}`);
  return parts.join(" \\\n  ");
}

async function copyCurl() {
  const text = $("curl").textContent;
  try {
    await navigator.clipboard.writeText(text);
    $("copy-status").textContent = "Copied.";
  } catch {
    // No clipboard API (a page served over plain HTTP to another host): select it for Ctrl+C.
    const range = document.createRange();
    range.selectNodeContents($("curl"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    $("copy-status").textContent = "Selected: press Ctrl+C to copy.";
  }
}

// --- wiring ----------------------------------------------------------------------------------------
function start() {
  $("model").addEventListener("change", (e) => pickModel(e.target.value));
  $("try").addEventListener("submit", run);
  $("try").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("try").requestSubmit();
  });
  $("copy-curl").addEventListener("click", copyCurl);
  $("auth-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("api-key").value.trim();
    if (key) sessionStorage.setItem(KEY, key);
    $("api-key").value = "";
    $("notice").textContent = key ? "Key saved for this tab." : "";
    loadModels();
  });
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    $("notice").textContent = "Key forgotten.";
  });
  if (sessionStorage.getItem(KEY)) $("auth").hidden = false;
  loadModels();
}

start();
