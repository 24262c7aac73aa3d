// minivit explain: draws the numbers that minivit computed in NumPy (the manifest below the
// page).  Nothing here runs the model: the only arithmetic is the attention rollout, recomputed
// from the stored attention as minivit.analysis.attention_rollout does, and colour scales.
// This file: the manifest, the state, colours and drawing; explain_forward.js (panels 1-4) and
// explain_backward.js (panels 5-7, the controls) follow it in the same script.
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
  target: null, step: 0, playing: null, frame: null,      // frame: the epoch slider's, or null
};

function story() { return M.models[state.model].images[state.image]; }
function arr(name) { return story()[name]; }
function frameStory() {            // the epoch slider's frame (trained model only), or null
  if (!M.film || state.frame === null || state.model !== 0) return null;
  return M.film.frames[state.frame].images[state.image];
}
function farr(name) {              // panels 2, 4 and 5: the frame's array where it has one
  const frame = frameStory();
  return frame && frame[name] ? frame[name] : arr(name);
}
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

