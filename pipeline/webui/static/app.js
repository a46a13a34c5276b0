// photodrag web editor: talks to the local server; all coordinates sent are photo pixels.
"use strict";
const $ = (id) => document.getElementById(id);
const S = { id: null, kind: "photo", hasMask: false, width: 0, height: 0, faces: [], face: null, editedFaces: [],
            state: "none", pairs: [], pending: null,
            painting: false, paintMode: false, frameVersion: -1, handles: [], targets: [], zoom: 1,
            displayW: 0, displayH: 0, maskUsed: false, poll: null,
            presets: {}, presetArrows: { handles: [], targets: [] } };

async function api(path, opts = {}) {
  const r = await fetch(path, opts);
  if (!r.ok) {
    let msg = r.statusText;
    try { const j = await r.json(); msg = j.error || j.detail || msg; } catch (e) {}
    throw new Error(msg);
  }
  return r.headers.get("content-type")?.includes("json") ? r.json() : r;
}
const post = (path, body) => api(path, { method: "POST", headers: { "Content-Type": "application/json" },
                                         body: JSON.stringify(body || {}) });
function showError(e) { $("error").textContent = e ? String(e.message || e) : ""; }

fetch("/api/info").then((r) => r.json()).then((i) => {
  const inv = i.inversion || {};
  const profile = inv.profile === "full" ? "full PTI schedule" : `${inv.profile} profile (faster, rougher likeness)`;
  $("model").textContent = `model ${i.model} (${i.resolution}px); inversion: ${profile}, `
    + `${inv.projection_steps} projection + up to ${inv.tuning_steps} tuning steps`;
});

// start from a seed: the installed generators, then POST /api/seed (DragGAN's own workflow)
fetch("/api/models").then((r) => r.json()).then((list) => {
  for (const m of list) {
    const o = document.createElement("option");
    o.value = m.id;
    o.textContent = `${m.label} (${m.resolution}px${m.subject ? ", " + m.subject : ""})`;
    $("seed-model").appendChild(o);
  }
});

$("seed-start").onclick = async () => {
  showError(null);
  if (S.id) navigator.sendBeacon(`/api/session/${S.id}/close`);
  Object.assign(S, { id: null, pairs: [], pending: null, handles: [], targets: [], frameVersion: -1, maskUsed: false });
  resetPresets();
  const body = { model: $("seed-model").value, seed: parseInt($("seed").value, 10),
                 psi: parseFloat($("psi").value), latent: $("latent").value };
  try {
    const s = await post("/api/seed", body);
    Object.assign(S, { id: s.id, kind: "seed", width: s.width, height: s.height, faces: [], face: null, editedFaces: [],
                       state: "generating" });
    listFaces();
    $("status").textContent = "Generating the seed's picture...";
    await loadFrame(true);
    updateButtons();
    startPolling();
  } catch (e) { showError(e); }
};

// edits by name: one slider per preset; the server computes the arrows from the face's landmarks
fetch("/api/presets").then((r) => r.json()).then((list) => {
  for (const p of list) {
    const row = document.createElement("label");
    row.className = "preset"; row.title = p.description;
    row.innerHTML = `<span>${p.name}</span><input type="range" id="preset-${p.name}" min="${p.min}" max="${p.max}" `
      + `step="0.05" value="0" disabled><span id="preset-${p.name}-value">0</span>`;
    $("presets").appendChild(row);
    $(`preset-${p.name}`).addEventListener("input", (ev) => {
      const v = parseFloat(ev.target.value);
      $(`preset-${p.name}-value`).textContent = v.toFixed(2);
      if (v === 0) delete S.presets[p.name]; else S.presets[p.name] = v;
      showPresetArrows();
    });
  }
});

async function showPresetArrows() {
  showError(null);
  try { S.presetArrows = await post(`/api/session/${S.id}/presets`, { presets: S.presets }); }
  catch (e) { S.presetArrows = { handles: [], targets: [] }; showError(e); }
  drawOverlay(); updateButtons();
}

function resetPresets() {
  S.presets = {}; S.presetArrows = { handles: [], targets: [] };
  document.querySelectorAll("#presets input").forEach((i) => { i.value = 0; $(`${i.id}-value`).textContent = "0"; });
}

$("upload").addEventListener("change", async (ev) => {
  const file = ev.target.files[0];
  if (!file) return;
  showError(null);
  if (S.id) navigator.sendBeacon(`/api/session/${S.id}/close`);
  Object.assign(S, { id: null, pairs: [], pending: null, handles: [], targets: [], frameVersion: -1, maskUsed: false });
  resetPresets();
  $("status").textContent = "Finding faces...";
  const fd = new FormData();
  fd.append("file", file);
  try {
    const s = await api("/api/session", { method: "POST", body: fd });
    Object.assign(S, { id: s.id, kind: "photo", width: s.width, height: s.height, faces: s.faces, face: null,
                       editedFaces: [], state: "uploaded" });
    await loadFrame(true);
    listFaces();
    $("status").textContent = s.faces.length > 1
      ? `${s.faces.length} faces found: pick one to edit; each face keeps its edit when you pick another.`
      : "1 face found: pick it to invert.";
    startPolling();
  } catch (e) { showError(e); $("status").textContent = "Upload a photo with a face."; }
});

// one button per face: the face being edited is highlighted, faces with an edit are marked
function listFaces() {
  const box = $("faces");
  box.innerHTML = "";
  S.faces.forEach((f) => {
    const b = document.createElement("button");
    b.id = `face-${f.index}`;
    const edited = S.editedFaces.includes(f.index);
    b.textContent = `Face ${f.index}${edited ? " \u270e" : ""}`;
    b.title = edited ? "this face has an edit; it stays when you edit another" : "edit this face";
    if (f.index === S.face) b.className = "primary";
    b.disabled = ["dragging", "inverting"].includes(S.state);
    b.onclick = async () => {
      showError(null);
      try {
        await post(`/api/session/${S.id}/invert`, { face: f.index });
        S.state = "inverting"; S.pairs = []; S.pending = null; resetPresets(); updateButtons(); listFaces();
      } catch (e) { showError(e); }
    };
    box.appendChild(b);
  });
}

async function loadFrame(resize) {
  const img = new Image();
  img.src = `/api/session/${S.id}/frame.jpg?t=${Date.now()}`;
  await img.decode();
  const c = $("photo");
  if (resize || c.width !== img.width) {
    for (const id of ["photo", "overlay", "maskcanvas"]) { $(id).width = img.width; $(id).height = img.height; }
    S.displayW = img.width; S.displayH = img.height;
    if (resize) fitZoom();
    applyZoom();
  }
  c.getContext("2d").drawImage(img, 0, 0);
  drawOverlay();
}

// the default zoom shows the whole photo: the stage's CSS limits (85vh, 100vw - 360px), never above 1
function fitZoom() {
  const fit = Math.min(1, (window.innerWidth - 360) / S.displayW, 0.85 * window.innerHeight / S.displayH);
  S.zoom = Math.max(0.1, Math.floor(fit * 20) / 20);
  $("zoom").value = S.zoom;
}

function applyZoom() {
  for (const id of ["photo", "overlay", "maskcanvas"]) {
    $(id).style.width = `${S.displayW * S.zoom}px`;
    $(id).style.height = `${S.displayH * S.zoom}px`;
  }
}
$("zoom").addEventListener("input", (e) => { S.zoom = parseFloat(e.target.value); applyZoom(); });

const scale = () => S.displayW / S.width;  // display pixels per photo pixel
function toPhoto(ev) {
  const r = $("overlay").getBoundingClientRect();
  const x = (ev.clientX - r.left) / r.width * S.displayW, y = (ev.clientY - r.top) / r.height * S.displayH;
  return [x / scale(), y / scale()];
}

function drawOverlay() {
  const c = $("overlay"), g = c.getContext("2d"), k = scale();
  g.clearRect(0, 0, c.width, c.height);
  if (S.state === "uploaded" || (S.faces.length > 1 && S.state === "ready")) {
    g.lineWidth = 2; g.font = "16px sans-serif";
    S.faces.forEach((f) => {  // the face being edited in yellow, the others dimmed
      const [l, t, r, b] = f.box.map((v) => v * k);
      g.strokeStyle = g.fillStyle = S.face === null || f.index === S.face ? "#ffc800" : "rgba(255,255,255,0.45)";
      g.strokeRect(l, t, r - l, b - t); g.fillText(String(f.index), l + 4, t + 16);
    });
  }
  const dot = (p, color) => { g.fillStyle = color; g.beginPath(); g.arc(p[0] * k, p[1] * k, 5, 0, 7); g.fill(); };
  const arrow = (a, b) => { g.strokeStyle = "#fff"; g.lineWidth = 2; g.beginPath();
                            g.moveTo(a[0] * k, a[1] * k); g.lineTo(b[0] * k, b[1] * k); g.stroke(); };
  const live = S.state === "dragging" && S.handles.length;
  S.pairs.forEach((p, i) => { const h = live ? S.handles[i] || p.handle : p.handle;
                              arrow(h, p.target); dot(h, "#e62828"); dot(p.target, "#2860e6"); });
  if (!live) S.presetArrows.handles.forEach((h, i) => { const t = S.presetArrows.targets[i];
                                                         arrow(h, t); dot(h, "#e62828"); dot(t, "#2860e6"); });
  if (S.pending) dot(S.pending, "#e62828");
  $("points").textContent = S.pairs.map((p, i) =>
    `${i + 1}: (${p.handle.map(Math.round)}) -> (${p.target.map(Math.round)})`).join("  ");
}

$("overlay").addEventListener("mousedown", (ev) => {
  if (S.state !== "ready") return;
  if (S.paintMode) { S.painting = true; paint(ev); return; }
  const p = toPhoto(ev);
  if (!S.pending) { S.pending = p; } else { S.pairs.push({ handle: S.pending, target: p }); S.pending = null; }
  drawOverlay(); updateButtons();
});
$("overlay").addEventListener("mousemove", (ev) => { if (S.painting) paint(ev); });
window.addEventListener("mouseup", () => { S.painting = false; });
function paint(ev) {
  const r = $("overlay").getBoundingClientRect();
  const x = (ev.clientX - r.left) / r.width * S.displayW, y = (ev.clientY - r.top) / r.height * S.displayH;
  const g = $("maskcanvas").getContext("2d");
  g.fillStyle = "rgba(0,255,120,0.35)"; g.beginPath(); g.arc(x, y, 18, 0, 7); g.fill();
  S.maskUsed = true; updateButtons();
}
$("paint").onclick = () => { S.paintMode = !S.paintMode; $("paint").textContent = S.paintMode ? "Click points" : "Paint mask"; };
$("clearmask").onclick = () => { const c = $("maskcanvas"); c.getContext("2d").clearRect(0, 0, c.width, c.height);
                                 S.maskUsed = false; updateButtons(); };
$("clear").onclick = () => { S.pairs = []; S.pending = null; drawOverlay(); updateButtons(); };

$("start").onclick = async () => {
  showError(null);
  const body = { drags: S.pairs, presets: S.presets, steps: parseInt($("steps").value, 10) || 300,
                 mask: S.maskUsed ? $("maskcanvas").toDataURL("image/png") : null };
  try { await post(`/api/session/${S.id}/drag`, body); S.state = "dragging"; updateButtons(); }
  catch (e) { showError(e); }
};
$("stop").onclick = () => post(`/api/session/${S.id}/stop`).catch(showError);
for (const act of ["undo", "reset"]) {
  $(act).onclick = async () => {
    showError(null);
    try { await post(`/api/session/${S.id}/${act}`); S.pairs = []; S.pending = null; await loadFrame(false); }
    catch (e) { showError(e); }
  };
}

function updateButtons() {
  const ready = S.state === "ready", busy = ["dragging", "inverting", "generating"].includes(S.state);
  $("start").disabled = !(ready && (S.pairs.length || S.presetArrows.handles.length));
  document.querySelectorAll("#presets input").forEach((i) => { i.disabled = !ready; });
  $("stop").disabled = !busy;
  for (const id of ["undo", "reset", "paint", "clear", "clearmask"]) $(id).disabled = !ready;
  for (const id of ["download-result", "download-run", "download-recipe"]) $(id).hidden = !(ready && S.id);
  $("download-latent").hidden = !(ready && S.id && S.kind === "seed");
  $("download-mask").hidden = !(ready && S.id && S.hasMask);
  $("download-result").textContent = S.kind === "seed" ? "Edited picture (PNG)"
    : S.editedFaces.length > 1 ? `Edited photo (faces ${S.editedFaces.join(", ")})` : "Edited photo";
  if (S.id) {
    $("download-latent").href = `/api/session/${S.id}/latent.safetensors`;
    $("download-mask").href = `/api/session/${S.id}/mask.png`;
    $("download-result").href = `/api/session/${S.id}/result`;
    $("download-recipe").href = `/api/session/${S.id}/recipe`;
    $("download-run").href = `/api/session/${S.id}/run.zip`;
  }
}

function startPolling() {
  if (S.poll) clearInterval(S.poll);
  S.poll = setInterval(async () => {
    if (!S.id) return;
    try {
      const st = await api(`/api/session/${S.id}/status`);
      const was = S.state;
      S.state = st.state; S.handles = st.handles; S.targets = st.targets; S.hasMask = !!st.mask;
      const faces = JSON.stringify([st.face, st.edited_faces || []]);
      const facesChanged = faces !== JSON.stringify([S.face, S.editedFaces]);
      S.face = st.face ?? null; S.editedFaces = st.edited_faces || [];
      $("progress").max = st.total || 1; $("progress").value = st.step || 0;
      const what = st.state === "uploaded" ? $("status").textContent :  // "N faces found: pick one"
                   st.state === "generating" ? "Generating the seed's picture..." :
                   st.state === "inverting" ? `Inverting: ${st.phase} ${st.step}/${st.total}` :
                   st.state === "dragging" ? `Dragging: step ${st.step}/${st.total}` :
                   st.state === "ready" ? `Ready${st.face !== null && S.faces.length > 1 ? ` (face ${st.face})` : ""}. `
                                          + st.message : st.message;
      $("status").textContent = what;
      if (st.state === "error") showError(st.message);
      if (st.frame_version !== S.frameVersion) { S.frameVersion = st.frame_version; await loadFrame(false); }
      if (was !== S.state || facesChanged) listFaces();
      if (was !== S.state) { if (was === "dragging" && S.state === "ready") { S.pairs = []; resetPresets(); } updateButtons(); drawOverlay(); }
      else if (S.state === "dragging") drawOverlay();
    } catch (e) { showError(e); }
  }, 300);
}

window.addEventListener("pagehide", () => { if (S.id) navigator.sendBeacon(`/api/session/${S.id}/close`); });
