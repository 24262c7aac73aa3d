// minivit explain, panels 5-7 and the controls: the prediction, the backward pass, trained
// against untrained (after explain.js and explain_forward.js).

// ---------------------------------------------------------------- panel 5: prediction
function prediction() { return softmax(farr("logits").data); }

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
  document.getElementById("film-epoch").disabled = i !== 0;
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

// ---------------------------------------------------------------- the epoch slider (panel 8)
const filmInput = document.getElementById("film-epoch");

function setFrame(i) {               // i: a frame of M.film, or null for the final model
  state.frame = i;
  const frames = M.film.frames;
  filmInput.value = i === null ? frames.length : i;
  const last = frames[frames.length - 1].epoch;
  document.getElementById("film-label").textContent =
    i === null ? `final model (epoch ${last})` : `epoch ${frames[i].epoch} of ${last}`;
  const note = document.getElementById("film-note");
  note.hidden = i === null;
  note.textContent = i === null ? "" :
    `Replaying the training: panels 2, 4 and 5 show the model after epoch ${frames[i].epoch}` +
    (frames[i].epoch === 0 ? " (its initialisation)" : "") + "; the other panels show the final model.";
  renderAttention(); renderRollout(); renderPrediction();
}

if (M.film) {
  document.getElementById("film").hidden = false;
  filmInput.max = M.film.frames.length;
  filmInput.addEventListener("input", () =>
    setFrame(+filmInput.value === M.film.frames.length ? null : +filmInput.value));
}

function renderTokenViews() {
  renderPatches(); renderAttention(); renderResidual(); renderRollout();
}

function renderAll() {
  if (state.target === null) state.target = argmax(prediction());
  renderTokenViews(); renderPrediction(); renderBackward(); renderCompare();
}

function plural(n, word) { return `${n} ${word}${n === 1 ? "" : "s"}`; }
document.getElementById("subtitle").textContent =
  `${C.name}: ${S}×${S} pixels, ${PS}×${PS} patches (${N} + ${P} tokens), ${plural(L, "block")}, ${plural(H, "head")}, ` +
  `width ${D}, pool ${C.pool}, ${K} classes`;
document.getElementById("notes").textContent = (M.notes || []).join(" ");
buildAttentionGrid();
renderAll();
if (M.film) setFrame(null);

// For tests and for the curious: the decoded manifest and the page's own views.
window.minivitExplain = {
  manifest: M, state: state, rollout: rollout, selectToken: selectToken, setTarget: setTarget,
  setModel: setModel, step: step, setFrame: setFrame,
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
