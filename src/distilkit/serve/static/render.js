// Answers rendered the way people read them: candidates and labels as bars, the QA answer inside its
// context, entities inline by type. Every function builds DOM nodes (never HTML strings), so text
// from the model or the user cannot inject markup.

/** Build an element: el("td", {class: "num"}, "0.5", child, ...). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** A score as people read it: 4 decimals, or scientific notation below 1e-4. */
export function formatScore(score) {
  if (typeof score !== "number" || !Number.isFinite(score)) return String(score);
  return score !== 0 && Math.abs(score) < 1e-4 ? score.toExponential(2) : score.toFixed(4);
}

/** Slice by code points: the server's offsets count characters, JavaScript strings UTF-16 units. */
function codePoints(text) {
  return Array.from(text);
}

/** One horizontal bar per {label, score}: scores in [0, 1] fill the track proportionally. */
export function bars(rows, caption) {
  const list = el("ol", {class: "bars", "aria-label": caption});
  for (const row of rows) {
    const fill = el("span", {class: "bar-fill"});
    const width = Math.max(0, Math.min(1, Number(row.score) || 0));
    fill.style.width = `${(width * 100).toFixed(2)}%`;
    list.append(el("li", {class: "bar-row"},
      el("span", {class: "bar-label", title: row.title || row.label}, row.label),
      el("span", {class: "bar-track", "aria-hidden": "true"}, fill),
      el("span", {class: "bar-value"}, formatScore(row.score))));
  }
  return list;
}

function table(head, rows, caption) {
  return el("div", {class: "table-wrap"},
    el("table", {},
      el("caption", {}, caption),
      el("thead", {}, el("tr", {}, head.map((h) => el("th", {scope: "col"}, h)))),
      el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c)))))));
}

/** ``sequence`` with the part that differs from ``text`` (the filled mask) marked. */
function markedSequence(text, sequence, mask) {
  const at = text.indexOf(mask);
  if (at < 0) return [sequence];
  const maxPrefix = Math.min(at, sequence.length);
  let prefix = 0;
  while (prefix < maxPrefix && text[prefix] === sequence[prefix]) prefix++;
  const tailRoom = Math.min(text.length - at - mask.length, sequence.length - prefix);
  let suffix = 0;
  const same = (k) => text[text.length - 1 - k] === sequence[sequence.length - 1 - k];
  while (suffix < tailRoom && same(suffix)) suffix++;
  return [sequence.slice(0, prefix), el("mark", {}, sequence.slice(prefix, sequence.length - suffix)),
    sequence.slice(sequence.length - suffix)];
}

/** The input with every mask replaced by its group's best token (several masks). */
function filledFromGroups(text, mask, groups) {
  const parts = text.split(mask);
  const nodes = [parts[0]];
  parts.slice(1).forEach((part, i) => {
    let token = groups[i] && groups[i][0] ? String(groups[i][0].token_str) : mask;
    if (parts[i] === "" || /\s$/.test(parts[i])) token = token.trimStart();  // BPE tokens carry their space
    nodes.push(el("mark", {}, token), part);
  });
  return nodes;
}

export function renderFillMask(body, request, model) {
  const groups = Array.isArray(body) && Array.isArray(body[0]) ? body : [body];
  const text = request.inputs;
  const mask = model.mask_token || "[MASK]";
  const out = [];
  const best = groups.length === 1 && groups[0][0] ? groups[0][0] : null;
  const filled = best && typeof best.sequence === "string"
    ? markedSequence(text, best.sequence, mask) : filledFromGroups(text, mask, groups);
  out.push(el("p", {class: "filled", "aria-label": "Filled sentence"}, filled));
  groups.forEach((candidates, i) => {
    const caption = groups.length > 1 ? `Mask ${i + 1} of ${groups.length}` : "Candidates";
    out.push(el("h3", {}, caption));
    out.push(bars(candidates.map((c) => ({label: String(c.token_str).trim() || c.token_str, score: c.score,
      title: `token ${c.token}: ${JSON.stringify(c.token_str)}`})), caption));
  });
  return out;
}

export function renderQuestionAnswering(body, request) {
  const answers = (Array.isArray(body) ? body : [body]).filter((a) => a && typeof a === "object");
  const context = request.inputs.context;
  const out = [];
  const best = answers[0];
  if (!best || best.answer === "" || best.start === best.end) {
    out.push(el("p", {class: "no-answer"}, "No answer in this context",
      best ? ` (score ${formatScore(best.score)})` : "", "."));
  }
  const chars = codePoints(context);
  if (best && best.end > best.start && best.end <= chars.length) {
    out.push(el("p", {class: "context", "aria-label": "Context with the answer marked"},
      chars.slice(0, best.start).join(""),
      el("mark", {class: "answer"}, chars.slice(best.start, best.end).join("")),
      chars.slice(best.end).join("")));
  }
  out.push(table(["#", "answer", "score", "start", "end"],
    answers.map((a, i) => [String(i + 1), a.answer, formatScore(a.score), String(a.start), String(a.end)]),
    answers.length > 1 ? "Answers, best first" : "Answer"));
  return out;
}

export function renderTextClassification(body) {
  let result = body;
  if (Array.isArray(result) && result.length === 1 && Array.isArray(result[0])) result = result[0];  // a pair
  const labels = (Array.isArray(result) ? result : [result]).filter((r) => r && typeof r === "object");
  return [bars(labels.map((r) => ({label: r.label, score: r.score})), "Labels")];
}

/** Entity type for colouring: the group, or the tag without its B-/I- prefix. */
function entityType(entity) {
  const label = String(entity.entity_group ?? entity.entity ?? "?");
  return entity.entity_group !== undefined ? label : label.replace(/^[BIELS][-_]/, "");
}

export function renderTokenClassification(body, request) {
  const entities = (Array.isArray(body) ? body : []).filter((e) => e && typeof e === "object");
  const chars = codePoints(request.inputs);
  const types = [...new Set(entities.map(entityType))];
  const inline = el("p", {class: "entities-text", "aria-label": "Text with the entities marked"});
  let cursor = 0;
  for (const e of entities) {
    const placed = Number.isInteger(e.start) && Number.isInteger(e.end);
    if (!placed || e.start < cursor || e.end > chars.length) continue;  // overlapping or unplaced: table only
    const type = entityType(e);
    inline.append(chars.slice(cursor, e.start).join(""),
      el("mark", {class: `ent ent-c${types.indexOf(type) % 8}`, "data-type": type},
        el("span", {class: "ent-text"}, chars.slice(e.start, e.end).join("")),
        el("span", {class: "ent-type"}, type)));
    cursor = e.end;
  }
  inline.append(chars.slice(cursor).join(""));
  const head = ["#", "text", "entity", "score", "start", "end", "word"];
  const rows = entities.map((e, i) => [String(i + 1),
    Number.isInteger(e.start) ? chars.slice(e.start, e.end).join("") : "", String(e.entity_group ?? e.entity),
    formatScore(e.score), String(e.start), String(e.end), String(e.word)]);
  const count = `${entities.length} entit${entities.length === 1 ? "y" : "ies"}`;
  const out = [inline, table(head, rows, count)];
  if (!entities.length) {
    out.unshift(el("p", {class: "hint"}, "No entity found (labels in ignore_labels are left out)."));
  }
  return out;
}

export const RENDERERS = {
  "fill-mask": renderFillMask,
  "question-answering": renderQuestionAnswering,
  "text-classification": renderTextClassification,
  "token-classification": renderTokenClassification,
};

/** Server-Timing entries as [{name, dur, desc}] from the header value. */
export function parseServerTiming(header) {
  if (!header) return [];
  return header.split(",").map((part) => {
    const [name, ...fields] = part.trim().split(";");
    const entry = {name: name.trim()};
    for (const field of fields) {
      const [key, value = ""] = field.trim().split("=");
      entry[key.trim()] = key.trim() === "dur" ? Number(value) : value.replace(/^"|"$/g, "");
    }
    return entry;
  }).filter((e) => e.name);
}
