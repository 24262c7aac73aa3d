// minivit explain, panels 1-4: the forward pass of the selected token (after explain.js).

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
  const tokens = document.getElementById("tokens-canvas");
  tokens.width = 4 * D; tokens.height = 4 * T;
  drawMatrix(tokens, arr("embedded").data, T, D, true, t);
  document.getElementById("tokens-caption").textContent =
    `z_0, every token the encoder gets: ${T} rows (the class token first, then the patches row by row) × ${D} numbers; the selected row is outlined`;
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
  const probs = farr("probs"), t = state.token, out = new Float32Array(N);
  for (let n = 0; n < N; n++) {
    out[n] = state.direction === "from" ? at(probs, l, h, t, P + n) : at(probs, l, h, P + n, t);
  }
  return out;
}

function renderAttention() {
  const dist = farr("attention_distance"), probs = farr("probs");
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
  drawMatrix(probsC, slice(farr("probs"), l, h), T, T, false, t);
  row.append(el("div", { class: "strip-box" }, el("span", { class: "label", text: "A: rows are queries, columns keys (token 0 first)" }), probsC));
  if (frameStory()) {
    box.append(row, el("p", { class: "label", text: "The scores and A·V are shown for the final model only (slide the epoch to the end)." }));
    return;
  }
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
  const probs = modelIndex === undefined && imageIndex === undefined ? farr("probs")
    : M.models[modelIndex === undefined ? state.model : modelIndex]
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

