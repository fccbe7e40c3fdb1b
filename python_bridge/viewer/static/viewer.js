// The `worldfm view` page: fly a camera, send its pose to the gateway at display rate, show
// the newest frame. Plain JavaScript, no build step. The messages are described in
// docs/viewer.md; poses are in the project's camera convention (docs/conventions.md):
// c2w is a 4x4 camera-to-world matrix in metres, camera axes x right, y down, z forward,
// sent as 16 numbers row-major.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const token = new URLSearchParams(location.search).get("token") || "";

  // ------------------------------------------------------------------ vectors
  const add = (a, b) => [a[0] + b[0], a[1] + b[1], a[2] + b[2]];
  const scale = (a, s) => [a[0] * s, a[1] * s, a[2] * s];
  const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
  const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
  const normalize = (a) => scale(a, 1 / Math.hypot(a[0], a[1], a[2]));
  const column = (m, j) => [m[j], m[4 + j], m[8 + j]]; // of a row-major 4x4

  // ------------------------------------------------------------------ camera
  // A fly camera without roll: yaw turns about the scene's up axis, pitch about the camera's
  // x axis. From the OpenCV axes: x = z × u for a level camera (u = up = -y), so the
  // levelled forward h and right r give f = cos(pitch) h + sin(pitch) u and y = z × x.
  class FlyCamera {
    constructor() { this.reset0 = null; }

    setStart(c2w, up) {
      this.up = normalize(up);
      const x0 = column(c2w, 0), z0 = column(c2w, 2);
      // The levelled right axis of the start view, and forward = up × right (exact for a level camera).
      this.r0 = normalize(add(x0, scale(this.up, -dot(x0, this.up))));
      this.f0 = cross(this.up, this.r0);
      this.reset0 = { position: column(c2w, 3), pitch: Math.asin(Math.max(-1, Math.min(1, dot(z0, this.up)))) };
      this.reset();
    }

    reset() {
      this.position = this.reset0.position.slice();
      this.yaw = 0;
      this.pitch = this.reset0.pitch;
    }

    axes() {
      const cy = Math.cos(this.yaw), sy = Math.sin(this.yaw);
      const cp = Math.cos(this.pitch), sp = Math.sin(this.pitch);
      const h = add(scale(this.f0, cy), scale(this.r0, sy)); // yaw > 0 turns right
      const f = add(scale(h, cp), scale(this.up, sp));
      const r = add(scale(this.r0, cy), scale(this.f0, -sy)); // = h × up
      return { x: r, y: cross(f, r), z: f };
    }

    c2w() {
      const { x, y, z } = this.axes(), p = this.position;
      return [x[0], y[0], z[0], p[0], x[1], y[1], z[1], p[1], x[2], y[2], z[2], p[2], 0, 0, 0, 1];
    }

    look(dxPixels, dyPixels) {
      const radiansPerPixel = 0.0035;
      this.yaw += dxPixels * radiansPerPixel;
      const limit = (89 * Math.PI) / 180;
      this.pitch = Math.max(-limit, Math.min(limit, this.pitch - dyPixels * radiansPerPixel));
    }

    move(forward, right, upward, metres) {
      const { x, z } = this.axes();
      let d = add(add(scale(z, forward), scale(x, right)), scale(this.up, upward));
      const n = Math.hypot(d[0], d[1], d[2]);
      if (n === 0) return false;
      this.position = add(this.position, scale(d, metres / n));
      return true;
    }
  }

  // ------------------------------------------------------------------ state
  const camera = new FlyCamera();
  const canvas = $("view"), ctx = canvas.getContext("2d");
  const state = {
    ws: null, connection: "connecting", server: "", backoff: 500, welcome: null,
    scene: null, sceneName: null, speedBase: 1, view: "generated", steps: null,
    dirty: false, n: 0, sent: new Map(), frames: 0, frameTimes: [], latencies: [], stages: {},
    gen: null, anchor: null, header: null, thumbnails: [], recording: false, recordStart: 0,
    buildStart: 0, progress: null, lastFrameHeader: null,
  };
  const keys = new Set();

  // ------------------------------------------------------------------ connection
  function connect() {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws?token=${encodeURIComponent(token)}`);
    ws.binaryType = "arraybuffer";
    state.ws = ws;
    setConnection("connecting");
    ws.onopen = () => { state.backoff = 500; setConnection("connected"); };
    ws.onmessage = (ev) => (typeof ev.data === "string" ? onControl(JSON.parse(ev.data)) : onBinary(ev.data));
    ws.onclose = () => {
      state.ws = null;
      const wait = state.backoff;
      state.backoff = Math.min(5000, state.backoff * 2);
      setConnection(`reconnecting in ${(wait / 1000).toFixed(1)} s`);
      setTimeout(connect, wait);
    };
  }

  function send(message) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(message));
  }

  function setConnection(text) { state.connection = text; }

  function onControl(m) {
    switch (m.type) {
      case "welcome": return onWelcome(m);
      case "scenes": return fillScenes(m.scenes);
      case "opening": return showProgress(`opening ${m.name}`, null);
      case "progress": return onProgress(m);
      case "scene": return onScene(m);
      case "open_failed": hideProgress(); return say(m.message, true);
      case "server":
        state.server = m.state === "connected" ? "" : `server ${m.state}`;
        if (m.state !== "connected") say(m.message || "the bridge server is unavailable; retrying", true);
        return;
      case "recording": return onRecording(m.on);
      case "recorded": return onRecorded(m);
      case "video_progress": return onVideoProgress(m);
      case "video_ready": return onVideoReady(m);
      case "error": return say(m.message, true);
    }
  }

  function onBinary(buffer) {
    const head = new DataView(buffer).getUint32(0, true);
    const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, head)));
    const parts = [];
    let offset = 4 + head;
    for (const length of header.parts) {
      parts.push(new Blob([new Uint8Array(buffer, offset, length)], { type: "image/jpeg" }));
      offset += length;
    }
    if (header.type === "frame") onFrame(header, parts);
    else if (header.type === "thumbnail") {
      if (state.thumbnails[header.index]) URL.revokeObjectURL(state.thumbnails[header.index]);
      state.thumbnails[header.index] = URL.createObjectURL(parts[0]);
      $("reference-img").dataset.index = ""; // show the new picture at the next frame
    }
  }

  // ------------------------------------------------------------------ scenes
  function onWelcome(m) {
    state.welcome = m;
    fillScenes(m.scenes);
    const steps = m.model.steps || [];
    const box = $("steps");
    box.querySelectorAll("label").forEach((l) => l.remove());
    state.steps = steps.length ? (m.model.default_steps || steps[0]) : null;
    for (const s of steps) {
      const label = document.createElement("label");
      label.innerHTML = `<input type="radio" name="steps" value="${Number(s)}"> ${Number(s)}`;
      label.querySelector("input").checked = s === state.steps;
      box.appendChild(label);
    }
    if (!steps.length) box.appendChild(Object.assign(document.createElement("label"), { textContent: "none (anchor fallback)" }));
    send({ type: "open", scene: state.sceneName || m.default });
  }

  function fillScenes(scenes) {
    const select = $("scene");
    const current = state.sceneName;
    select.replaceChildren(...scenes.map((s) => new Option(s.name, s.name)));
    if (current && !scenes.some((s) => s.name === current)) select.add(new Option(current, current));
    if (current) select.value = current;
  }

  function onProgress(m) {
    const labels = { views: "rendering source views", read: "reading the dataset", upload: "uploading views", build: "building the anchor on the server" };
    if (m.stage === "build" && !state.buildStart) state.buildStart = performance.now();
    state.progress = m;
    const fraction = m.stage === "build" ? null : m.total ? m.done / m.total : null;
    showProgress(`${m.name}: ${labels[m.stage] || m.stage}` + (m.stage === "build" ? "" : ` ${m.done}/${m.total}`), fraction);
  }

  function showProgress(text, fraction) {
    $("progress").hidden = false;
    $("progress-label").textContent = text;
    const bar = $("progress-bar");
    if (fraction === null) bar.removeAttribute("value"); else bar.value = fraction;
  }

  function hideProgress() { $("progress").hidden = true; state.buildStart = 0; state.progress = null; }

  function onScene(m) {
    hideProgress();
    const changed = state.sceneName !== m.name || !state.scene;
    state.scene = m;
    state.sceneName = m.name;
    fillScenes(state.welcome.scenes.some((s) => s.name === m.name) ? state.welcome.scenes : [...state.welcome.scenes, { name: m.name }]);
    state.thumbnails.forEach((u) => u && URL.revokeObjectURL(u));
    state.thumbnails = [];
    if (changed) {
      camera.setStart(m.start, m.up);
      state.speedBase = m.speed;
      state.gen = state.anchor = state.header = null;
    }
    updateSpeed();
    $("record-btn").disabled = false;
    say(`${m.name}: ${m.views} views, ${m.points.toLocaleString()} points, built in ${(m.build_ms / 1000).toFixed(1)} s`);
    state.dirty = true;
  }

  // ------------------------------------------------------------------ frames
  function onFrame(header, parts) {
    const sentAt = state.sent.get(header.n);
    for (const n of state.sent.keys()) if (n <= header.n) state.sent.delete(n);
    Promise.all(parts.map((p) => createImageBitmap(p))).then((bitmaps) => {
      send({ type: "ack" });
      const now = performance.now();
      if (state.gen) state.gen.close();
      if (state.anchor) state.anchor.close();
      [state.gen, state.anchor] = [bitmaps[0], bitmaps[1] || null];
      state.header = header;
      state.frames += 1;
      state.frameTimes.push(now);
      if (sentAt !== undefined) pushWindow(state.latencies, now - sentAt, 60);
      for (const [k, v] of Object.entries(header.timings || {})) pushWindow(state.stages[k] || (state.stages[k] = []), v, 30);
      draw();
    }, () => { send({ type: "ack" }); say("a frame could not be decoded", true); });
  }

  function pushWindow(list, value, size) { list.push(value); if (list.length > size) list.shift(); }

  function draw() {
    const gen = state.gen;
    if (!gen) return;
    const anchor = state.anchor;
    const w = gen.width, h = gen.height;
    const side = state.view === "side" && anchor;
    const cw = side ? 2 * w : w;
    if (canvas.width !== cw || canvas.height !== h) {
      canvas.width = cw;
      canvas.height = h;
      $("frame").style.setProperty("--aspect", `${cw} / ${h}`);
    }
    if (state.view === "anchor" && anchor) ctx.drawImage(anchor, 0, 0);
    else if (side) { ctx.drawImage(gen, 0, 0); ctx.drawImage(anchor, w, 0); label("generated", 4, h); label("anchor", w + 4, h); }
    else if (state.view === "wipe" && anchor) {
      const split = Math.round((w * Number($("wipe").value)) / 100);
      ctx.drawImage(gen, 0, 0);
      ctx.drawImage(anchor, split, 0, w - split, h, split, 0, w - split, h);
      ctx.fillStyle = "#fff";
      ctx.fillRect(split - 1, 0, 2, h);
    } else ctx.drawImage(gen, 0, 0);
    const ref = state.header.reference;
    const figure = $("reference");
    if (ref !== null && ref !== undefined && state.thumbnails[ref]) {
      figure.hidden = false;
      if ($("reference-img").dataset.index !== String(ref)) {
        $("reference-img").src = state.thumbnails[ref];
        $("reference-img").dataset.index = String(ref);
        $("reference-label").textContent = `reference #${ref}`;
      }
    } else figure.hidden = true;
  }

  function label(text, x, h) { // bottom-left of a half, clear of the HUD
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#000a";
    ctx.fillRect(x - 2, h - 18, ctx.measureText(text).width + 6, 16);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x + 1, h - 6);
  }

  // ------------------------------------------------------------------ HUD
  const fmt = (v) => (v === undefined || v === null || !isFinite(v) ? "–" : v >= 100 ? v.toFixed(0) : v.toFixed(1));
  function percentile(values, p) {
    if (!values.length) return undefined;
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
  }
  function hud(name, text) { document.querySelector(`[data-hud="${name}"]`).textContent = text; }

  function updateHud() {
    const now = performance.now();
    while (state.frameTimes.length && state.frameTimes[0] < now - 2000) state.frameTimes.shift();
    const span = state.frameTimes.length > 1 ? (now - state.frameTimes[0]) / 1000 : 0;
    hud("fps", span > 0 ? fmt((state.frameTimes.length - 1) / span) : "0.0");
    hud("latency_p50", fmt(percentile(state.latencies, 50)));
    hud("latency_p95", fmt(percentile(state.latencies, 95)));
    for (const stage of ["anchor_ms", "encode_ms", "generate_ms", "decode_ms"]) {
      hud(stage, state.stages[stage] ? fmt(percentile(state.stages[stage], 50)) : "n/a");
    }
    const model = state.welcome ? state.welcome.model : {};
    hud("model", model.name || "–");
    hud("provider", (model.provider || "–").replace("ExecutionProvider", ""));
    hud("steps", state.steps === null ? "n/a" : String(state.steps));
    let conn = state.connection;
    if (state.server) conn = `${conn}, ${state.server}`;
    if (state.buildStart) conn += ` · building ${((now - state.buildStart) / 1000).toFixed(1)} s`;
    hud("connection", conn);
    if (state.buildStart && state.progress) onProgress(state.progress);
    if (state.recording) $("record-state").textContent = `recording ${((now - state.recordStart) / 1000).toFixed(1)} s`;
  }

  // ------------------------------------------------------------------ input
  const typing = (el) => el && (el.tagName === "INPUT" && el.type !== "radio" && el.type !== "range" || el.tagName === "SELECT");
  window.addEventListener("keydown", (e) => {
    if (typing(e.target) && document.pointerLockElement !== canvas) return;
    if (e.code === "KeyR" && !e.repeat) { if (state.scene) { camera.reset(); state.dirty = true; } return; }
    if (["KeyW", "KeyA", "KeyS", "KeyD", "KeyQ", "KeyE", "ShiftLeft", "ShiftRight"].includes(e.code)) {
      keys.add(e.code);
      e.preventDefault();
    }
  });
  window.addEventListener("keyup", (e) => keys.delete(e.code));
  window.addEventListener("blur", () => keys.clear());

  // Look: pointer lock after a click (Esc releases), or drag with a mouse, pen or finger.
  let drag = null;
  canvas.addEventListener("pointerdown", (e) => {
    drag = { id: e.pointerId, x: e.clientX, y: e.clientY, moved: 0 };
    canvas.setPointerCapture(e.pointerId);
    canvas.focus();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!state.scene) return;
    if (document.pointerLockElement === canvas) { camera.look(e.movementX, e.movementY); state.dirty = true; return; }
    if (!drag || drag.id !== e.pointerId) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    drag.x = e.clientX; drag.y = e.clientY; drag.moved += Math.abs(dx) + Math.abs(dy);
    camera.look(dx, dy);
    state.dirty = true;
  });
  canvas.addEventListener("pointerup", (e) => {
    const click = drag && drag.moved < 4 && e.pointerType === "mouse";
    drag = null;
    if (click && canvas.requestPointerLock && document.pointerLockElement !== canvas) {
      const lock = canvas.requestPointerLock();
      if (lock && lock.catch) lock.catch(() => {}); // not granted (headless, iframe): drag still works
    }
  });
  canvas.addEventListener("pointercancel", () => { drag = null; });

  // ------------------------------------------------------------------ controls
  $("scene").addEventListener("change", (e) => send({ type: "open", scene: e.target.value }));
  $("seed-form").addEventListener("submit", (e) => {
    e.preventDefault();
    send({ type: "open", scene: `procedural:${Math.max(0, Math.floor(Number($("seed").value) || 0))}` });
  });
  document.querySelectorAll('input[name="view"]').forEach((r) => r.addEventListener("change", () => {
    state.view = r.value;
    $("wipe").hidden = state.view !== "wipe";
    state.dirty = true; // the anchor image comes only when a view needs it
    draw();
  }));
  $("steps").addEventListener("change", (e) => {
    if (e.target.name === "steps") { state.steps = Number(e.target.value); state.dirty = true; }
  });
  $("wipe").addEventListener("input", draw);
  $("speed").addEventListener("input", updateSpeed);
  function speed() { return state.speedBase * Math.pow(10, Number($("speed").value)); }
  function updateSpeed() { $("speed-out").textContent = `${speed().toPrecision(2)} m/s`; }
  $("reset").addEventListener("click", () => { if (state.scene) { camera.reset(); state.dirty = true; } });

  $("record-btn").addEventListener("click", () => send({ type: "record", on: !state.recording }));
  function onRecording(on) {
    state.recording = on;
    state.recordStart = performance.now();
    const button = $("record-btn");
    button.classList.toggle("recording", on);
    button.textContent = on ? "Stop" : "Record";
    if (!on) $("record-state").textContent = "";
  }
  function onRecorded(m) {
    onRecording(false);
    state.recordingId = m.rec;
    $("record-state").textContent = `${m.frames} poses, ${m.seconds} s`;
    $("downloads").hidden = false;
    $("download-json").href = m.json;
    $("download-video").hidden = true;
    $("video-progress").hidden = true;
    $("render-video").disabled = false;
    $("render-command").textContent = m.command;
  }
  $("render-video").addEventListener("click", () => {
    $("render-video").disabled = true;
    $("video-progress").hidden = false;
    $("video-progress").removeAttribute("value");
    send({ type: "render_video", rec: state.recordingId });
  });
  function onVideoProgress(m) {
    if (m.rec !== state.recordingId) return;
    $("video-progress").value = m.done / m.total;
  }
  function onVideoReady(m) {
    if (m.rec !== state.recordingId) return;
    $("video-progress").hidden = true;
    if (m.command) $("render-command").textContent = m.command; // what renders the MP4's frames
    const link = $("download-video");
    link.href = m.url;
    link.hidden = false;
    link.click(); // start the download at once
  }

  function say(text, error = false) {
    $("message").textContent = text || "";
    $("message").classList.toggle("error", error);
  }

  // ------------------------------------------------------------------ loop
  let last = performance.now();
  function tick(now) {
    const dt = Math.min(0.1, (now - last) / 1000);
    last = now;
    if (state.scene) {
      const fast = keys.has("ShiftLeft") || keys.has("ShiftRight") ? 4 : 1;
      const axis = (plus, minus) => (keys.has(plus) ? 1 : 0) - (keys.has(minus) ? 1 : 0);
      if (camera.move(axis("KeyW", "KeyS"), axis("KeyD", "KeyA"), axis("KeyE", "KeyQ"), speed() * fast * dt)) state.dirty = true;
    }
    if (state.dirty && state.scene && state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.n += 1;
      state.sent.set(state.n, now);
      send({ type: "pose", n: state.n, c2w: camera.c2w(), steps: state.steps, anchor: state.view !== "generated" });
      state.dirty = false;
    }
    requestAnimationFrame(tick);
  }

  // A read-only snapshot for scripts and tests (tests/python_bridge/test_viewer.py).
  window.worldfm = {
    snapshot: () => ({
      frames: state.frames,
      pose: state.scene ? camera.c2w() : null,
      scene: state.sceneName,
      ready: Boolean(state.scene),
      view: state.view,
      steps: state.steps,
      frame: state.header && { n: state.header.n, c2w: state.header.c2w, steps: state.header.steps, mode: state.header.mode, reference: state.header.reference, parts: state.header.parts.length },
      connection: state.connection,
    }),
  };

  connect();
  setInterval(updateHud, 250);
  requestAnimationFrame(tick);
})();
