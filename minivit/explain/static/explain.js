// minivit explain: draws the numbers that minivit computed in NumPy (the manifest below the
// page).  Nothing here runs the model: the only arithmetic is the attention rollout, recomputed
// from the stored attention as minivit.analysis.attention_rollout does, and colour scales.
"use strict";

// ---------------------------------------------------------------- the manifest
function halfToFloat(h) {
  const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
  if (exp === 0) return sign * Math.pow(2, -14) * (frac / 1024);
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * Math.pow(2, exp - 15) * (1 + frac / 1024);
}

function decodeArray(entry) {
  const bin = atob(entry.b64), bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  let data;
  if (entry.dtype === "u8") data = bytes;
  else if (entry.dtype === "f32") data = new Float32Array(bytes.buffer);
  else {
    const halves = new Uint16Array(bytes.buffer);
    data = new Float32Array(halves.length);
    for (let i = 0; i < halves.length; i++) data[i] = halfToFloat(halves[i]);
  }
  return { shape: entry.shape, data: data };
}

function decodeTree(obj) {          // every {dtype, shape, b64} becomes {shape, data}
  if (Array.isArray(obj)) return obj.map(decodeTree);
  if (obj && typeof obj === "object") {
    if ("b64" in obj) return decodeArray(obj);
    const out = {};
    for (const k of Object.keys(obj)) out[k] = decodeTree(obj[k]);
    return out;
  }
  return obj;
}

const M = decodeTree(JSON.parse(document.getElementById("minivit-data").textContent));
const C = M.config, L = C.depth, H = C.heads, G = C.grid, P = C.prefix, N = G * G, T = P + N;
const K = C.num_classes, D = C.embed_dim, S = C.image_size, PS = C.patch_size;

const state = {
  model: 0, image: 0, token: P + (G >> 1) * G + (G >> 1), direction: "from", detail: null,
  target: null, step: 0, playing: null,
};

function story() { return M.models[state.model].images[state.image]; }
function arr(name) { return story()[name]; }
function at(a, ...idx) {            // element of a decoded array by its indices
  let off = 0;
  for (let i = 0; i < idx.length; i++) off = off * a.shape[i] + idx[i];
  return a.data[off];
}
function slice(a, ...idx) {         // the contiguous sub-array under the leading indices
  let off = 0, size = 1;
  for (let i = 0; i < idx.length; i++) off = off * a.shape[i] + idx[i];
  for (let i = idx.length; i < a.shape.length; i++) { size *= a.shape[i]; off *= a.shape[i]; }
  return a.data.subarray(off, off + size);
}
function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}
function softmax(logits) {
  const m = Math.max(...logits), e = Array.from(logits, v => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map(v => v / s);
}
function tokenName(t) {
  if (t < P) return t === 0 ? "class token" : "prefix token " + t;
  const n = t - P;
  return `patch (${Math.floor(n / G)}, ${n % G})`;
}
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

// ---------------------------------------------------------------- colours
const SEQ = [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
  [245, 125, 21], [250, 193, 39], [252, 255, 164]];               // inferno, 8 stops
function seqColor(v) {              // v in [0, 1]
  v = Math.min(1, Math.max(0, v || 0)) * (SEQ.length - 1);
  const i = Math.min(SEQ.length - 2, Math.floor(v)), f = v - i, a = SEQ[i], b = SEQ[i + 1];
  return [0, 1, 2].map(c => Math.round(a[c] + f * (b[c] - a[c])));
}
function divColor(v) {              // v in [-1, 1]: blue, white, red
  v = Math.min(1, Math.max(-1, v || 0));
  const w = 1 - Math.abs(v);
  return v >= 0 ? [255, Math.round(255 * w), Math.round(255 * w)]
    : [Math.round(255 * w), Math.round(255 * w), 255];
}
function css(rgb, alpha) {
  return alpha === undefined ? `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`
    : `rgba(${rgb[0]},${rgb[1]},${rgb[2]},${alpha})`;
}
function maxAbs(values) { let m = 0; for (const v of values) m = Math.max(m, Math.abs(v)); return m || 1; }

// ---------------------------------------------------------------- drawing
const imageCanvases = M.images.map(img => {
  const c = document.createElement("canvas"), ctx = c.getContext("2d");
  c.width = S; c.height = S;
  const px = img.pixels.data, rgba = ctx.createImageData(S, S);
  for (let i = 0; i < S * S; i++) {
    for (let ch = 0; ch < 3; ch++) rgba.data[4 * i + ch] = px[ch * S * S + i];
    rgba.data[4 * i + 3] = 255;
  }
  ctx.putImageData(rgba, 0, 0);
  return c;
});

function drawImage(ctx, size, dim) {
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(imageCanvases[state.image], 0, 0, size, size);
  if (dim) { ctx.fillStyle = `rgba(0,0,0,${dim})`; ctx.fillRect(0, 0, size, size); }
}

// values: N numbers (one per patch, row-major) painted over the image; returns the argmax
function drawPatchMap(canvas, values, opts) {
  opts = opts || {};
  const ctx = canvas.getContext("2d"), size = canvas.width, cell = size / G;
  drawImage(ctx, size, 0.45);
  const signed = opts.signed, scale = opts.scale || (signed ? maxAbs(values) : Math.max(...values) || 1);
  const low = opts.range ? Math.min(...values) : 0;     // range: the smallest value is dark
  for (let n = 0; n < N; n++) {
    const v = (values[n] - low) / (scale - low || 1);
    ctx.fillStyle = signed ? css(divColor(v), 0.8) : css(seqColor(v), 0.25 + 0.6 * Math.min(1, Math.max(0, v)));
    ctx.fillRect((n % G) * cell, Math.floor(n / G) * cell, cell, cell);
  }
  if (opts.mark !== undefined && opts.mark >= P) {
    const n = opts.mark - P;
    ctx.strokeStyle = "#22d3ee"; ctx.lineWidth = Math.max(1, size / 120);
    ctx.strokeRect((n % G) * cell + 0.5, Math.floor(n / G) * cell + 0.5, cell - 1, cell - 1);
  }
  return argmax(values);
}

// a (rows, cols) grid of values as coloured cells
function drawMatrix(canvas, values, rows, cols, signed, markRow) {
  const ctx = canvas.getContext("2d"), cw = canvas.width / cols, ch = canvas.height / rows;
  const scale = signed ? maxAbs(values) : Math.max(...values) || 1;
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
    const v = values[r * cols + c] / scale;
    ctx.fillStyle = css(signed ? divColor(v) : seqColor(v));
    ctx.fillRect(c * cw, r * ch, Math.ceil(cw), Math.ceil(ch));
  }
  if (markRow !== undefined) {
    ctx.strokeStyle = "#22d3ee"; ctx.lineWidth = 1;
    ctx.strokeRect(0.5, markRow * ch + 0.5, canvas.width - 1, ch);
  }
}

function strip(values, label, signed) {   // a vector as one row of coloured cells
  const c = el("canvas", { width: 256, height: 14, class: "strip", title: label });
  drawMatrix(c, values, 1, values.length, signed === undefined ? true : signed);
  return el("div", { class: "strip-box" }, el("span", { class: "label", text: label }), c);
}

function fmt(v, digits) { return Number(v).toPrecision(digits || 3); }

// ---------------------------------------------------------------- panel 1: patches and tokens
const imageCanvas = document.getElementById("image-canvas");

function renderPatches() {
  const ctx = imageCanvas.getContext("2d"), size = imageCanvas.width, cell = size / G;
  drawImage(ctx, size, 0);
  ctx.strokeStyle = "rgba(255,255,255,0.35)"; ctx.lineWidth = 1;
  for (let i = 1; i < G; i++) {
    ctx.beginPath(); ctx.moveTo(i * cell + 0.5, 0); ctx.lineTo(i * cell + 0.5, size); ctx.stroke();
    ctx.beginPath(); ctx.moveTo(0, i * cell + 0.5); ctx.lineTo(size, i * cell + 0.5); ctx.stroke();
  }
  const info = document.getElementById("token-info");
  info.replaceChildren();
  const t = state.token;
  info.append(el("h3", { text: `token ${t}: ${tokenName(t)}` }));
  if (t >= P) {
    const n = t - P, r = Math.floor(n / G), c = n % G;
    ctx.strokeStyle = "#22d3ee"; ctx.lineWidth = 3;
    ctx.strokeRect(c * cell + 1.5, r * cell + 1.5, cell - 3, cell - 3);
    const px = M.images[state.image].pixels.data, rows = [];
    for (let y = 0; y < PS; y++) {
      const cells = [];
      for (let x = 0; x < PS; x++) {
        const o = (r * PS + y) * S + c * PS + x, rgb = [0, 1, 2].map(ch => px[ch * S * S + o]);
        cells.push(el("td", { style: `background:${css(rgb)};color:${rgb[0] + rgb[1] + rgb[2] > 380 ? "#000" : "#fff"}`,
          text: rgb.join(" ") }));
      }
      rows.push(el("tr", {}, ...cells));
    }
    info.append(el("p", { class: "label", text: `its ${PS}×${PS}×3 pixels (RGB, 0-255), flattened to ${PS * PS * 3} numbers` }),
      el("table", { class: "pixels" }, ...rows));
    info.append(strip(slice(M.models[state.model].images[state.image].patch_tokens, n),
      `x_p E: its embedding (${D} numbers)`));
  }
  info.append(strip(slice(M.models[state.model].pos_embed, t), `E_pos[${t}]: its position embedding`));
  info.append(strip(slice(arr("embedded"), t), "z_0 = x_p E + E_pos: the token the encoder gets"));
  if (t >= P) {
    const sim = el("canvas", { width: 120, height: 120, id: "pos-similarity" });
    drawPatchMap(sim, slice(M.models[state.model].pos_similarity, t - P), { signed: true, scale: 1, mark: t });
    info.append(el("div", { class: "strip-box" },
      el("span", { class: "label", text: "cosine similarity of its position embedding with every other (blue −1, red +1)" }), sim));
  }
}

function selectToken(t) {
  if (t === state.token) return;
  state.token = t;
  renderTokenViews();
}

function tokenAt(event) {
  const r = imageCanvas.getBoundingClientRect();
  const col = Math.floor((event.clientX - r.left) / r.width * G);
  const row = Math.floor((event.clientY - r.top) / r.height * G);
  if (row < 0 || col < 0 || row >= G || col >= G) return null;
  return P + row * G + col;
}
imageCanvas.addEventListener("mousemove", e => { const t = tokenAt(e); if (t !== null) selectToken(t); });
imageCanvas.addEventListener("click", e => { const t = tokenAt(e); if (t !== null) selectToken(t); });

document.addEventListener("keydown", e => {
  const tag = (e.target && e.target.tagName) || "";
  if (["INPUT", "SELECT", "TEXTAREA"].includes(tag)) return;
  const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
  if (e.key === "Home") { selectToken(0); e.preventDefault(); return; }
  if (!(e.key in moves)) return;
  const n = Math.max(0, state.token - P), [dr, dc] = moves[e.key];
  const r = Math.min(G - 1, Math.max(0, Math.floor(n / G) + dr));
  const c = Math.min(G - 1, Math.max(0, (n % G) + dc));
  selectToken(P + r * G + c);
  e.preventDefault();
});

// ---------------------------------------------------------------- panel 2: attention
const attentionMaps = [];              // [block][head] -> {canvas, argmax}

function buildAttentionGrid() {
  const grid = document.getElementById("attention-grid");
  grid.style.gridTemplateColumns = `auto repeat(${H}, 1fr)`;
  grid.append(el("span"));
  for (let h = 0; h < H; h++) grid.append(el("span", { class: "label center", text: `head ${h + 1}` }));
  for (let l = 0; l < L; l++) {
    grid.append(el("span", { class: "label", text: `block ${l + 1}` }));
    attentionMaps.push([]);
    for (let h = 0; h < H; h++) {
      const canvas = el("canvas", { width: 96, height: 96, tabindex: "0",
        "aria-label": `block ${l + 1} head ${h + 1}: open its attention matrix` });
      const caption = el("span", { class: "caption" });
      const box = el("button", { class: "map", "data-block": l, "data-head": h }, canvas, caption);
      box.addEventListener("click", () => { state.detail = { block: l, head: h }; renderAttention(); });
      grid.append(box);
      attentionMaps[l].push({ canvas: canvas, caption: caption, argmax: -1 });
    }
  }
}

function attentionValues(l, h) {     // over the patches: the selected row, or column
  const probs = arr("probs"), t = state.token, out = new Float32Array(N);
  for (let n = 0; n < N; n++) {
    out[n] = state.direction === "from" ? at(probs, l, h, t, P + n) : at(probs, l, h, P + n, t);
  }
  return out;
}

function renderAttention() {
  const dist = arr("attention_distance"), probs = arr("probs");
  for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) {
    const m = attentionMaps[l][h], values = attentionValues(l, h);
    m.argmax = drawPatchMap(m.canvas, values, { mark: state.token });
    const prefix = state.direction === "from" ? at(probs, l, h, state.token, 0) : at(probs, l, h, 0, state.token);
    m.caption.textContent = `${fmt(at(dist, l, h), 3)} px · cls ${prefix.toFixed(2)}`;
    const open = state.detail && state.detail.block === l && state.detail.head === h;
    m.canvas.parentElement.classList.toggle("open", !!open);
  }
  renderAttentionDetail();
}

function renderAttentionDetail() {
  const box = document.getElementById("attention-detail");
  box.replaceChildren();
  if (!state.detail) {
    box.append(el("p", { class: "label", text: "Click a map to open its T×T matrix, its scores before the softmax and A·V for the selected token.  Under each map: the head's mean attention distance in pixels, and the weight on the class token." }));
    return;
  }
  const { block: l, head: h } = state.detail, t = state.token;
  box.append(el("h3", { text: `block ${l + 1}, head ${h + 1} (row ${t}: ${tokenName(t)})` }));
  const row = el("div", { class: "row wrap" });
  const probsC = el("canvas", { width: 3 * T, height: 3 * T, id: "detail-probs", class: "matrix" });
  drawMatrix(probsC, slice(arr("probs"), l, h), T, T, false, t);
  row.append(el("div", { class: "strip-box" }, el("span", { class: "label", text: "A: rows are queries, columns keys (token 0 first)" }), probsC));
  if (story().scores) {
    const scoresC = el("canvas", { width: 3 * T, height: 3 * T, id: "detail-scores", class: "matrix" });
    drawMatrix(scoresC, slice(arr("scores"), l, h), T, T, true, t);
    row.append(el("div", { class: "strip-box" }, el("span", { class: "label", text: "q k^T / √d: the scores before the softmax" }), scoresC));
  }
  box.append(row);
  if (story().head_outputs) {
    const d = D / H, merged = slice(arr("head_outputs"), l, t);
    box.append(strip(merged.subarray(h * d, (h + 1) * d), `A·V of this head for token ${t} (${d} numbers)`));
    box.append(strip(merged, `[A·V of heads 1..${H}] side by side: what attn.proj projects back to ${D}`));
  }
}

for (const [id, dir] of [["dir-from", "from"], ["dir-to", "to"]]) {
  document.getElementById(id).addEventListener("click", () => {
    state.direction = dir;
    document.getElementById("dir-from").setAttribute("aria-pressed", dir === "from");
    document.getElementById("dir-to").setAttribute("aria-pressed", dir === "to");
    renderAttention();
  });
}

// ---------------------------------------------------------------- panel 3: residual stream
function renderResidual() {
  const canvas = document.getElementById("residual-canvas"), ctx = canvas.getContext("2d");
  const norms = arr("residual_norms"), t = state.token, W = canvas.width, Hc = canvas.height;
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, Hc);
  let top = 0;
  for (let l = 0; l < L; l++) for (let j = 0; j < 3; j++) top = Math.max(top, at(norms, l, t, j));
  const colors = ["#94a3b8", "#2563eb", "#ea580c"], names = ["|z_{l-1}| residual", "|MSA update|", "|MLP update|"];
  const left = 36, bottom = Hc - 40, group = (W - left - 10) / L, bar = group / 4;
  ctx.font = "11px sans-serif"; ctx.fillStyle = "#334155";
  ctx.fillText(fmt(top, 3), 2, 12); ctx.fillText("0", 24, bottom);
  for (let l = 0; l < L; l++) {
    for (let j = 0; j < 3; j++) {
      const v = at(norms, l, t, j), h = (bottom - 14) * v / top;
      ctx.fillStyle = colors[j];
      ctx.fillRect(left + l * group + j * bar, bottom - h, bar - 2, h);
    }
    ctx.fillStyle = "#334155";
    ctx.fillText(`block ${l + 1}`, left + l * group, bottom + 14);
  }
  names.forEach((name, j) => {
    ctx.fillStyle = colors[j]; ctx.fillRect(left + j * 150, Hc - 14, 10, 10);
    ctx.fillStyle = "#334155"; ctx.fillText(name, left + j * 150 + 14, Hc - 5);
  });
  const lens = document.getElementById("lens");
  lens.replaceChildren(lensTable("what the pooled vector would predict after each block",
    l => slice(arr("lens_pooled"), l)),
  lensTable(`what ${tokenName(t)} alone would predict`, l => slice(arr("lens_tokens"), l, t)));
}

function lensTable(caption, logitsOf) {
  const head = el("tr", {}, el("th", { text: "" }),
    ...M.class_names.map(n => el("th", { class: "vertical", text: n })));
  const rows = [head];
  for (let l = 0; l < L; l++) {
    const p = softmax(logitsOf(l)), best = argmax(p);
    rows.push(el("tr", {}, el("th", { text: `block ${l + 1}` }),
      ...p.map((v, k) => el("td", { style: `background:${css(seqColor(v))}`, title: `${M.class_names[k]} ${v.toFixed(3)}`,
        class: k === best ? "best" : "" }))));
  }
  return el("table", { class: "lens" }, el("caption", { text: caption }), ...rows);
}

// ---------------------------------------------------------------- panel 4: rollout
// As minivit.analysis.attention_rollout: fuse the heads, zero the `discard` fraction of the
// smallest weights of each row, add the identity, renormalise the rows, chain the blocks.
function rollout(depth, discard, fusion, modelIndex, imageIndex) {
  const probs = M.models[modelIndex === undefined ? state.model : modelIndex]
    .images[imageIndex === undefined ? state.image : imageIndex].probs;
  let result = new Float64Array(T * T);
  for (let i = 0; i < T; i++) result[i * T + i] = 1;
  const nDrop = Math.floor(discard * T);
  for (let l = 0; l < depth; l++) {
    const fused = new Float64Array(T * T);
    for (let i = 0; i < T * T; i++) {
      let acc = fusion === "mean" ? 0 : probs.data[l * H * T * T + i];
      for (let h = 0; h < H; h++) {
        const v = probs.data[(l * H + h) * T * T + i];
        acc = fusion === "mean" ? acc + v : fusion === "max" ? Math.max(acc, v) : Math.min(acc, v);
      }
      fused[i] = fusion === "mean" ? acc / H : acc;
    }
    const aHat = new Float64Array(T * T);
    for (let r = 0; r < T; r++) {
      const row = fused.subarray(r * T, (r + 1) * T);
      if (nDrop) {
        const order = Array.from(row.keys()).sort((a, b) => row[a] - row[b] || a - b);
        for (let j = 0; j < nDrop; j++) row[order[j]] = 0;
      }
      let sum = 0;
      for (let c = 0; c < T; c++) {
        aHat[r * T + c] = 0.5 * row[c] + (r === c ? 0.5 : 0);
        sum += aHat[r * T + c];
      }
      for (let c = 0; c < T; c++) aHat[r * T + c] /= sum;
    }
    const next = new Float64Array(T * T);
    for (let r = 0; r < T; r++) for (let k = 0; k < T; k++) {
      const a = aHat[r * T + k];
      if (a === 0) continue;
      for (let c = 0; c < T; c++) next[r * T + c] += a * result[k * T + c];
    }
    result = next;
  }
  return result;
}

function rolloutMap(R, reader) {      // what the pooled vector (or the token) reads, per patch
  const out = new Float64Array(N);
  if (reader === "token" || C.pool === "token") {
    const r = reader === "token" ? state.token : 0;
    for (let n = 0; n < N; n++) out[n] = R[r * T + P + n];
    return out;
  }
  for (let q = P; q < T; q++) for (let n = 0; n < N; n++) out[n] += R[q * T + P + n] / N;
  return out;
}

function renderRollout() {
  const depth = +document.getElementById("rollout-depth").value;
  const discard = +document.getElementById("rollout-discard").value;
  const fusion = document.getElementById("rollout-fusion").value;
  const reader = document.getElementById("rollout-reader").value;
  document.getElementById("rollout-depth-value").textContent = `${depth} of ${L}`;
  document.getElementById("rollout-discard-value").textContent = discard.toFixed(1);
  const values = rolloutMap(rollout(depth, discard, fusion), reader);
  drawPatchMap(document.getElementById("rollout-canvas"), values,
    { mark: reader === "token" ? state.token : undefined, range: true });
  document.getElementById("rollout-caption").textContent =
    `colour: from the smallest weight a patch gets (${fmt(Math.min(...values))}, dark) to the largest (${fmt(Math.max(...values))})`;
}

// ---------------------------------------------------------------- panel 5: prediction
function prediction() { return softmax(arr("logits").data); }

function renderPrediction() {
  const p = prediction(), order = p.map((v, k) => k).sort((a, b) => p[b] - p[a]);
  const box = document.getElementById("prediction");
  box.replaceChildren(...order.map((k, rank) => {
    const row = el("button", { class: "bar-row" + (k === state.target ? " target" : ""), "data-class": k,
      "aria-label": `make ${M.class_names[k]} the target class` },
    el("span", { class: "bar-name", text: M.class_names[k] }),
    el("span", { class: "bar" }, el("span", { class: "fill", style: `width:${(100 * p[k]).toFixed(1)}%` })),
    el("span", { class: "bar-value", text: p[k].toFixed(3) }));
    row.addEventListener("click", () => setTarget(k));
    if (rank === 0) row.classList.add("top");
    return row;
  }));
  document.getElementById("target-class").value = String(state.target);
}

function setTarget(k) {
  state.target = k;
  renderPrediction();
  renderBackward();
  renderCompare();
}

// ---------------------------------------------------------------- panel 6: the backward pass
const STAGES = M.stages.length;          // depth + 3: logits, head, L blocks, pixels

function stageCanvas(s) {
  const k = state.target;
  if (s === 0) {                           // dL/dlogits, one bar per class
    const c = el("canvas", { width: 150, height: 150 }), ctx = c.getContext("2d");
    const d = slice(arr("d_logits"), k), m = maxAbs(d), w = 150 / K;
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, 150, 150);
    for (let j = 0; j < K; j++) {
      const h = 70 * d[j] / m;
      ctx.fillStyle = d[j] < 0 ? "#2563eb" : "#dc2626";
      ctx.fillRect(j * w + 1, 75 - Math.max(h, 0), w - 2, Math.abs(h));
    }
    ctx.fillStyle = "#334155"; ctx.fillRect(0, 75, 150, 1);
    return c;
  }
  const c = el("canvas", { width: 150, height: 150 });
  if (s <= L + 1) {
    const norms = slice(arr("token_grad_norms"), k, s - 1);
    drawPatchMap(c, norms.subarray(P));
    c.title = `|dL/dz| of the class token: ${fmt(norms[0])}; largest patch: ${fmt(Math.max(...norms.subarray(P)))}`;
    return c;
  }
  const g = slice(arr("d_image"), k), mag = new Float32Array(S * S);
  for (let i = 0; i < S * S; i++) mag[i] = Math.hypot(g[i], g[S * S + i], g[2 * S * S + i]);
  drawPixels(c, mag, false);
  return c;
}

function drawPixels(canvas, values, signed) {   // an S x S map, one cell per pixel
  drawMatrix(canvas, values, S, S, signed);
}

function renderBackward() {
  const box = document.getElementById("stages");
  box.replaceChildren();
  for (let s = 0; s < STAGES; s++) {
    const fig = el("figure", { class: "stage" + (s === state.step ? " current" : "") + (s > state.step ? " hidden" : ""),
      "data-stage": s });
    fig.append(s <= state.step ? stageCanvas(s) : el("div", { class: "placeholder" }),
      el("figcaption", { text: `${s}. ${M.stages[s]}` }));
    box.append(fig);
  }
  const loss = at(arr("loss"), state.target);
  document.getElementById("stage-label").textContent =
    `step ${state.step} of ${STAGES - 1}: ${M.stages[state.step]} · target ${M.class_names[state.target]}, loss ${loss.toFixed(3)}`;
  renderPixelPanel();
  renderParamGrads();
}

function renderPixelPanel() {
  const box = document.getElementById("pixel-panel");
  box.hidden = state.step !== STAGES - 1;
  box.replaceChildren();
  if (box.hidden) return;
  const g = slice(arr("d_image"), state.target), m = maxAbs(g);
  ["red", "green", "blue"].forEach((name, ch) => {
    const c = el("canvas", { width: 128, height: 128, class: "pixels-grad" });
    drawMatrix(c, g.subarray(ch * S * S, (ch + 1) * S * S), S, S, true);
    box.append(el("figure", {}, c, el("figcaption", { text: `dL/dx, ${name} channel (blue −, red +; max |${fmt(m)}|)` })));
  });
  const gxi = el("canvas", { width: 128, height: 128 });
  drawMatrix(gxi, slice(arr("grad_x_input"), state.target), S, S, true);
  box.append(el("figure", {}, gxi, el("figcaption", { text: "gradient × input, summed over channels" })));
  const img = el("canvas", { width: 128, height: 128 });
  drawImage(img.getContext("2d"), 128, 0);
  box.append(el("figure", {}, img, el("figcaption", { text: "the image" })));
}

function renderParamGrads() {
  const names = M.models[state.model].param_names, norms = slice(arr("param_grad_norms"), state.target);
  const blockNames = [], others = [];
  names.forEach((n, i) => {
    const m = /^blocks\.(\d+)\.(.*)$/.exec(n);
    if (m && !blockNames.includes(m[2])) blockNames.push(m[2]);
    if (!m) others.push(i);
  });
  let top = 0;
  for (const v of norms) top = Math.max(top, Math.log10(v + 1e-12));
  const bottom = top - 4;
  const cell = (i) => {
    const v = norms[i], x = (Math.log10(v + 1e-12) - bottom) / 4;
    return el("td", { style: `background:${css(seqColor(x))};color:${x > 0.6 ? "#000" : "#fff"}`,
      title: `${names[i]}: ${fmt(v)}`, text: fmt(v, 2) });
  };
  const rows = [el("tr", {}, el("th", { text: "" }), ...blockNames.map(n => el("th", { class: "vertical", text: n })))];
  for (let l = L - 1; l >= 0; l--) {
    rows.push(el("tr", {}, el("th", { text: `block ${l + 1}` }),
      ...blockNames.map(n => { const i = names.indexOf(`blocks.${l}.${n}`); return i < 0 ? el("td") : cell(i); })));
  }
  const table = el("table", { class: "params" }, ...rows);
  const rest = el("table", { class: "params" }, el("tr", {}, ...others.map(i => el("th", { class: "vertical", text: names[i] }))),
    el("tr", {}, ...others.map(cell)));
  document.getElementById("param-grads").replaceChildren(
    el("p", { class: "label", text: "colour: log10 of the norm, over four decades below the largest" }), table, rest);
}

function step(delta) {
  state.step = Math.min(STAGES - 1, Math.max(0, state.step + delta));
  renderBackward();
  return state.step;
}
function stopPlaying() {
  if (state.playing) { clearInterval(state.playing); state.playing = null; }
  document.getElementById("step-play").textContent = "Play";
}
document.getElementById("step-next").addEventListener("click", () => { stopPlaying(); step(1); });
document.getElementById("step-reset").addEventListener("click", () => { stopPlaying(); state.step = 0; renderBackward(); });
document.getElementById("step-play").addEventListener("click", () => {
  if (state.playing) { stopPlaying(); return; }
  if (state.step === STAGES - 1) state.step = -1;
  document.getElementById("step-play").textContent = "Pause";
  state.playing = setInterval(() => { if (step(1) === STAGES - 1) stopPlaying(); }, 600);
  step(state.step < 0 ? 1 : 0);
});

// ---------------------------------------------------------------- panel 7 and the controls
function renderCompare() {
  const box = document.getElementById("compare"), im = state.image;
  const head = el("tr", {}, el("th", { text: "" }),
    ...M.models.map((m, i) => el("th", { class: i === state.model ? "current" : "", text: m.label })));
  const row = (name, f) => el("tr", {}, el("th", { text: name }),
    ...M.models.map((m, i) => el("td", { class: i === state.model ? "current" : "", text: f(m.images[im]) })));
  const rows = [head, row("prediction", s => {
    const p = softmax(s.logits.data), k = argmax(p);
    return `${M.class_names[k]} ${p[k].toFixed(3)}`;
  }), row(`loss for ${M.class_names[state.target]}`, s => at(s.loss, state.target).toFixed(3)),
  row("‖∂L/∂x‖", s => fmt(Math.hypot(...slice(s.d_image, state.target))))];
  for (let l = 0; l < L; l++) {
    rows.push(row(`block ${l + 1}: mean attention distance`, s =>
      `${fmt(slice(s.attention_distance, l).reduce((a, b) => a + b, 0) / H)} px`));
  }
  box.replaceChildren(el("table", { class: "compare" }, ...rows),
    el("p", { class: "label", text: M.models.length > 1
      ? "The trained / untrained switch at the top redraws every panel for the other model."
      : "(written without the untrained model)" }));
}

function setModel(i) {
  if (i >= M.models.length) return;
  state.model = i;
  document.getElementById("model-trained").setAttribute("aria-pressed", i === 0);
  document.getElementById("model-untrained").setAttribute("aria-pressed", i === 1);
  renderAll();
}
document.getElementById("model-trained").addEventListener("click", () => setModel(0));
document.getElementById("model-untrained").addEventListener("click", () => setModel(1));
if (M.models.length < 2) document.getElementById("model-untrained").disabled = true;

const imageSelect = document.getElementById("image-select");
M.images.forEach((img, i) => imageSelect.append(el("option", { value: i, text: img.name })));
imageSelect.addEventListener("change", () => { state.image = +imageSelect.value; state.target = null; renderAll(); });

const targetSelect = document.getElementById("target-class");
M.class_names.forEach((n, k) => targetSelect.append(el("option", { value: k, text: n })));
targetSelect.addEventListener("change", () => setTarget(+targetSelect.value));

const depthInput = document.getElementById("rollout-depth");
depthInput.max = L; depthInput.value = L;
for (const id of ["rollout-depth", "rollout-discard", "rollout-fusion", "rollout-reader"]) {
  document.getElementById(id).addEventListener("input", renderRollout);
}

function renderTokenViews() {
  renderPatches(); renderAttention(); renderResidual(); renderRollout();
}

function renderAll() {
  if (state.target === null) state.target = argmax(prediction());
  renderTokenViews(); renderPrediction(); renderBackward(); renderCompare();
}

document.getElementById("subtitle").textContent =
  `${C.name}: ${S}×${S} pixels, ${PS}×${PS} patches (${N} + ${P} tokens), ${L} blocks, ${H} heads, ` +
  `width ${D}, pool ${C.pool}, ${K} classes`;
document.getElementById("notes").textContent = (M.notes || []).join(" ");
buildAttentionGrid();
renderAll();

// For tests and for the curious: the decoded manifest and the page's own views.
window.minivitExplain = {
  manifest: M, state: state, rollout: rollout, selectToken: selectToken, setTarget: setTarget,
  setModel: setModel, step: step,
  array: (name, model, image) => {
    const a = M.models[model === undefined ? state.model : model].images[image === undefined ? state.image : image][name];
    return { shape: a.shape, data: Array.from(a.data) };
  },
  attentionArgmax: () => attentionMaps.map(row => row.map(m => m.argmax)),
  rolloutMap: (depth, discard, fusion, reader) => Array.from(rolloutMap(rollout(depth, discard, fusion), reader)),
  shownTopClass: () => +document.querySelector("#prediction .bar-row.top").dataset.class,
  pixelGradient: () => Array.from(slice(arr("d_image"), state.target)),
  ready: true,
};
