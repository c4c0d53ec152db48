// imagerepo pages: upload with progress, summary, cancel and retry; an accessible suggestion
// box; the viewer (lightbox); selecting many photos; infinite scroll; reveal of moderated
// images; confirmation before delete. Everything also works without this script, only less
// smoothly: links, forms and the "Older" link do the same job.
"use strict";

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;  // never innerHTML: names are user input
  return node;
}

// Why the gateway refused a request, in its own words (its JSON error), else the status.
async function refusal(reply) {
  try {
    const body = await reply.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) { /* not JSON: say the status */ }
  return `the server answered ${reply.status}`;
}

// --- upload ------------------------------------------------------------------------------------

const RESULT_WORDS = { stored: "stored", duplicate: "stored (duplicate)", already_stored: "already in your library" };

function makeUploader(list) {
  const summary = document.getElementById("upload-summary");
  const text = document.getElementById("summary-text");
  const overall = document.getElementById("summary-bar");
  const cancel = document.getElementById("upload-cancel");
  const retry = document.getElementById("upload-retry");
  const state = { total: 0, done: 0, stored: 0, duplicates: 0, failed: 0, cancelled: 0, queue: [], active: new Set(), retryable: [] };

  function render() {
    if (!summary) return;
    summary.hidden = state.total === 0;
    const parts = [`${state.done} of ${state.total} done`];
    parts.push(`${state.stored} stored`);
    if (state.duplicates) parts.push(`${state.duplicates} already there`);
    if (state.failed) parts.push(`${state.failed} failed`);
    if (state.cancelled) parts.push(`${state.cancelled} cancelled`);
    text.textContent = parts.join(" · ");
    overall.value = state.total ? Math.round((state.done / state.total) * 100) : 0;
    const busy = state.active.size > 0 || state.queue.length > 0;
    cancel.hidden = !busy;
    retry.hidden = busy || state.retryable.length === 0;
  }

  function finishRow(job, kind, fill) {
    job.row.className = kind;
    job.status.textContent = "";
    if (kind !== "stored" && kind !== "duplicate") job.bar.remove();  // no full bar on a refusal
    else job.bar.value = 100;
    fill(job.status);
    state.done += 1;
    render();
  }

  function send(job) {
    return new Promise((resolve) => {
      const form = new FormData();
      form.append("file", job.file, job.file.name);
      const keep = document.getElementById("keep-duplicate");
      if (keep && keep.checked) form.append("keep_duplicate", "1");
      const xhr = new XMLHttpRequest();
      job.xhr = xhr;
      state.active.add(job);
      xhr.open("POST", "/api/images");
      xhr.setRequestHeader("X-CSRF-Token", csrfToken());
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) { job.bar.value = Math.round((e.loaded / e.total) * 95); job.status.textContent = "uploading"; }
      };
      xhr.upload.onload = () => { job.status.textContent = "analysing"; };
      const done = () => { state.active.delete(job); resolve(); };
      xhr.onload = () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (_) { body = null; }
        const result = body && body.results ? body.results[0] : null;
        if (result && result.result !== "rejected" && result.image) {
          const kind = result.result === "stored" ? "stored" : "duplicate";
          if (kind === "stored") state.stored += 1; else state.duplicates += 1;
          finishRow(job, kind, (status) => {
            status.append(el("a", { href: result.image.links.page }, result.message || RESULT_WORDS[result.result] || result.result));
            if (result.duplicate_of && result.duplicate_of.length) {
              status.append(el("span", { class: "muted" }, " · same bytes as "));
              status.append(el("a", { href: `/images/${encodeURIComponent(result.duplicate_of[0])}`, class: "original" }, "this earlier upload"));
            }
            if (result.image.status !== "ready") status.append(el("span", { class: "muted" }, ` · ${result.image.status_text || "analysing"}`));
          });
        } else {
          state.failed += 1;
          const message = result ? result.error : (body && body.error ? body.error.message : `the server answered ${xhr.status}`);
          if (xhr.status >= 500 || xhr.status === 0) state.retryable.push(job);
          finishRow(job, "rejected", (status) => status.append(el("span", { class: "error" }, message)));
        }
        done();
      };
      xhr.onerror = () => {
        state.failed += 1;
        state.retryable.push(job);
        finishRow(job, "rejected", (status) => status.append(el("span", { class: "error" }, "the connection failed")));
        done();
      };
      xhr.onabort = () => {
        state.cancelled += 1;
        finishRow(job, "cancelled", (status) => status.append(el("span", { class: "muted" }, "cancelled")));
        done();
      };
      xhr.send(form);
    });
  }

  async function pump() {
    // Two at a time: keeps the progress readable and the services busy without flooding them.
    const worker = async () => { while (state.queue.length) await send(state.queue.shift()); };
    await Promise.all([worker(), worker()]);
    render();
  }

  function add(files) {
    for (const file of Array.from(files)) {
      const row = el("li", { class: "uploading" });
      row.append(el("span", { class: "name" }, file.name));
      const bar = el("progress", { max: "100", value: "0" });
      const status = el("span", { class: "status" }, "waiting");
      row.append(bar, status);
      list.prepend(row);
      state.queue.push({ file, row, bar, status });
      state.total += 1;
    }
    render();
    return pump();
  }

  // Leaving the page drops every photo not yet sent, without a word: the browser asks first.
  window.addEventListener("beforeunload", (e) => {
    if (state.active.size === 0 && state.queue.length === 0) return;
    e.preventDefault();
    e.returnValue = "";
  });
  if (cancel) cancel.addEventListener("click", () => {
    for (const job of state.queue.splice(0)) {
      state.cancelled += 1;
      finishRow(job, "cancelled", (status) => status.append(el("span", { class: "muted" }, "cancelled")));
    }
    for (const job of Array.from(state.active)) job.xhr.abort();
    render();
  });
  if (retry) retry.addEventListener("click", () => {
    const again = state.retryable.splice(0);
    for (const job of again) {
      state.failed -= 1; state.done -= 1;
      job.row.className = "uploading";
      job.status.textContent = "waiting";
      job.bar.value = 0;
      job.row.insertBefore(job.bar, job.status);
      state.queue.push(job);
    }
    render();
    pump();
  });
  return add;
}

function setupUpload() {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const input = document.getElementById("files");
  const zone = document.getElementById("dropzone");
  const add = makeUploader(document.getElementById("upload-list"));
  // With this script, files upload as soon as they are chosen or dropped: no button needed.
  const button = document.getElementById("upload-button");
  if (button) button.hidden = true;
  const take = (files) => { if (files.length) add(files); input.value = ""; };
  form.addEventListener("submit", (e) => { e.preventDefault(); take(input.files); });
  input.addEventListener("change", () => take(input.files));
  ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.remove("over"); }));
  zone.addEventListener("drop", (e) => { if (e.dataTransfer.files.length) add(e.dataTransfer.files); });
}

// --- suggestions: an ARIA 1.2 combobox with a listbox popup --------------------------------------

function setupSuggestions() {
  const box = document.getElementById("q");
  const list = document.getElementById("suggestions");
  if (!box || !list) return;
  let timer = null;
  let active = -1;
  const options = () => Array.from(list.querySelectorAll("[role=option]"));
  const close = () => { list.hidden = true; box.setAttribute("aria-expanded", "false"); box.removeAttribute("aria-activedescendant"); active = -1; };
  const highlight = (i) => {
    const all = options();
    all.forEach((o, j) => o.setAttribute("aria-selected", j === i ? "true" : "false"));
    active = i;
    if (i >= 0 && all[i]) box.setAttribute("aria-activedescendant", all[i].id); else box.removeAttribute("aria-activedescendant");
  };
  const choose = (text) => { box.value = text; close(); box.form.submit(); };
  box.addEventListener("input", () => {
    clearTimeout(timer);
    const prefix = box.value.trim();
    if (!prefix) { close(); return; }
    timer = setTimeout(async () => {
      try {
        const reply = await fetch(`/api/suggest?q=${encodeURIComponent(prefix)}`);
        if (!reply.ok) return;
        const body = await reply.json();
        if (box.value.trim() !== prefix) return;  // the user typed on meanwhile
        list.replaceChildren(...body.suggestions.map((s, i) => {
          const li = el("li", { role: "option", id: `suggestion-${i}`, "data-value": s.text, "aria-selected": "false" });
          li.append(el("span", {}, s.text), el("span", { class: "count" }, `${s.document_count}`));
          li.addEventListener("mousedown", (e) => { e.preventDefault(); choose(s.text); });
          return li;
        }));
        const any = body.suggestions.length > 0;
        list.hidden = !any;
        box.setAttribute("aria-expanded", any ? "true" : "false");
        active = -1;
      } catch (_) { /* suggestions are a nicety */ }
    }, 150);
  });
  box.addEventListener("keydown", (e) => {
    const all = options();
    if (list.hidden || !all.length) return;
    if (e.key === "ArrowDown") { e.preventDefault(); highlight((active + 1) % all.length); }
    else if (e.key === "ArrowUp") { e.preventDefault(); highlight(active <= 0 ? all.length - 1 : active - 1); }
    else if (e.key === "Enter" && active >= 0) { e.preventDefault(); choose(all[active].dataset.value); }
    else if (e.key === "Escape") { e.preventDefault(); close(); }
  });
  box.addEventListener("blur", () => setTimeout(close, 100));
}

// --- viewer ------------------------------------------------------------------------------------

function viewerItems() {
  return Array.from(document.querySelectorAll("section.preview[data-id], figure.tile[data-id]"));
}

function setupViewer() {
  if (!viewerItems().length) return;
  const box = el("div", { class: "lightbox", id: "lightbox", role: "dialog", "aria-modal": "true", "aria-label": "photo viewer", hidden: "" });
  const stage = el("div", { class: "lb-stage" });
  const img = el("img", { id: "lb-image", alt: "" });
  stage.append(img);
  const bar = el("div", { class: "lb-bar" });
  const caption = el("span", { class: "lb-caption", id: "lb-caption" });
  const position = el("span", { class: "lb-position", id: "lb-position" });
  const zoom = el("button", { type: "button", id: "lb-zoom" }, "Full size");
  const details = el("a", { id: "lb-details" }, "Details");
  const download = el("a", { id: "lb-download" }, "Download");
  const remove = el("button", { type: "button", id: "lb-delete" }, "Delete");
  const star = el("button", { type: "button", id: "lb-star", "aria-pressed": "false", "aria-label": "add to favourites" }, "\u2606");
  const closer = el("button", { type: "button", id: "lb-close", "aria-label": "close the viewer" }, "✕");
  bar.append(caption, position, star, zoom, details, download, remove, closer);
  const prev = el("button", { type: "button", class: "lb-prev", id: "lb-prev", "aria-label": "previous photo" }, "‹");
  const next = el("button", { type: "button", class: "lb-next", id: "lb-next", "aria-label": "next photo" }, "›");
  box.append(bar, stage, prev, next);
  document.body.append(box);

  let current = -1;
  let opener = null;
  const items = () => {
    // One entry per image: the image page's own preview and its tiles may share an id.
    const seen = new Set();
    return viewerItems().filter((node) => !seen.has(node.dataset.id) && seen.add(node.dataset.id));
  };

  function show(index, push) {
    const all = items();
    if (!all.length) { close(); return; }
    current = (index + all.length) % all.length;
    const item = all[current];
    box.classList.remove("zoomed");
    zoom.textContent = "Full size";
    // A photo with no preview (damaged file) shows the sign and why, not a broken image;
    // Details, Download and Delete still work on it.
    const missing = "noPreview" in item.dataset;
    stage.querySelectorAll(".no-preview").forEach((n) => n.remove());
    img.hidden = missing;
    zoom.hidden = missing;
    if (missing) {
      img.removeAttribute("srcset");
      img.removeAttribute("src");
      const sign = noPreviewSign(item.dataset.caption || "", item.dataset.noPreview);
      sign.id = "lb-no-preview";
      stage.append(sign);
    } else setSource(item, false);
    img.alt = (item.querySelector("img") || {}).alt || item.dataset.caption || "";
    // A photo blurred on the page stays blurred here until revealed (a click reveals it).
    img.classList.toggle("blurred", !!item.querySelector("img.blurred"));
    caption.textContent = item.dataset.caption || "";
    position.textContent = `${current + 1} of ${all.length}`;
    details.href = item.dataset.page;
    download.href = item.dataset.download;
    remove.textContent = "trashed" in item.dataset ? "Delete for good" : "Delete";
    syncStar(item);
    if (box.hidden) {
      opener = document.activeElement;
      box.hidden = false;
      document.body.classList.add("viewing");
    }
    const hash = `#view=${encodeURIComponent(item.dataset.id)}`;
    if (location.hash !== hash) history[push ? "pushState" : "replaceState"](null, "", hash);
    closer.focus();
  }

  function close(fromHistory) {
    if (box.hidden) return;
    box.hidden = true;
    document.body.classList.remove("viewing");
    img.removeAttribute("src");
    if (!fromHistory && location.hash.startsWith("#view=")) history.pushState(null, "", location.pathname + location.search);
    if (opener && opener.focus) opener.focus();
  }

  // Fitted to the screen, a photo larger than its preview offers its original as well: laid
  // out no larger than the preview (as before), a 2x or 3x screen takes the original's pixels
  // and a 1x screen the preview. Zoomed, it is the original (or, for HEIC/TIFF, the preview).
  function setSource(item, zoomed) {
    img.removeAttribute("srcset");
    img.removeAttribute("sizes");
    const { preview, original } = item.dataset;
    const width = Number(item.dataset.width) || 0;
    const height = Number(item.dataset.height) || 0;
    const previewWidth = Number(item.dataset.previewWidth) || 0;
    if (!zoomed && width > previewWidth && previewWidth && height && original !== preview) {
      img.sizes = `min(${previewWidth}px, 100vw, calc((100vh - 3rem) * ${(width / height).toFixed(3)}))`;
      img.srcset = `${preview} ${previewWidth}w, ${original} ${width}w`;
    }
    img.src = zoomed ? original : preview;
  }

  function toggleZoom() {
    const item = items()[current];
    if (!item || "noPreview" in item.dataset) return;
    if (img.classList.contains("blurred")) {
      img.classList.remove("blurred");
      item.querySelectorAll(".blurred").forEach((n) => n.classList.remove("blurred"));
      item.querySelectorAll(".reveal").forEach((n) => n.remove());
      return;
    }
    const zoomed = box.classList.toggle("zoomed");
    zoom.textContent = zoomed ? "Fit" : "Full size";
    setSource(item, zoomed);
  }

  // A photo already in the trash (the Trash page, a trashed photo's page) is deleted for good:
  // moving it "to the trash" again would only drop its tile and offer an Undo that restores it.
  async function deleteCurrent() {
    const item = items()[current];
    if (!item) return;
    const trashed = "trashed" in item.dataset;
    const name = item.dataset.caption || "this photo";
    if (!window.confirm(trashed ? `Delete ${name} for good? This cannot be undone.` : `Move ${name} to the trash?`)) return;
    const reply = await fetch(`/api/images/${encodeURIComponent(item.dataset.id)}${trashed ? "?permanent=1" : ""}`, { method: "DELETE", headers: { "X-CSRF-Token": csrfToken() } });
    if (!reply.ok && reply.status !== 404) { caption.textContent = `Could not delete: ${await refusal(reply)}`; return; }
    if (item.matches("section.preview")) { location.href = trashed ? "/trash" : "/?deleted=" + encodeURIComponent(item.dataset.id); return; }
    document.querySelectorAll(`figure.tile[data-id="${CSS.escape(item.dataset.id)}"]`).forEach((n) => n.remove());
    document.dispatchEvent(new CustomEvent("tiles:changed"));
    if (!trashed) offerUndo(item.dataset.id, item.dataset.caption);
    if (items().length) show(current, false); else close();
  }

  function syncStar(item) {
    const source = item.querySelector("button.star");
    star.hidden = !source;
    const on = !!source && source.getAttribute("aria-pressed") === "true";
    star.setAttribute("aria-pressed", String(on));
    star.setAttribute("aria-label", on ? "remove from favourites" : "add to favourites");
    star.textContent = on ? "\u2605" : "\u2606";
  }

  star.addEventListener("click", async () => {
    const item = items()[current];
    const form = item && item.querySelector("form.star-form");
    if (!form) return;
    await toggleStar(form);
    syncStar(item);
  });

  function openFor(node, e) {
    const id = node.dataset.id;
    const index = items().findIndex((n) => n.dataset.id === id);
    if (index < 0) return;
    if (e) e.preventDefault();
    show(index, true);
  }

  document.addEventListener("click", (e) => {
    const link = e.target.closest("figure.tile .thumb-link, .open-viewer");
    if (!link || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
    if (document.body.classList.contains("selecting")) return;  // selection handles the click
    const node = link.closest("figure.tile") || document.querySelector("section.preview[data-id]");
    if (node) openFor(node, e);
  });
  // Past the last photo loaded, the next page of the gallery comes in first (no wrap round
  // while older photos exist). Steps run one after another: "next" pressed again while that
  // page comes in moves on from where the first press landed, not from the same photo again.
  let stepping = Promise.resolve();
  function step(by) {
    const go = () => stepNow(by);
    stepping = stepping.then(go, go);
    return stepping;
  }
  async function stepNow(by) {
    if (box.hidden) return;
    const all = items();
    if (by > 0 && current === all.length - 1 && document.getElementById("older")) {
      const id = all[current].dataset.id;
      await loadOlder();
      if (box.hidden) return;  // closed meanwhile: it stays closed
      current = items().findIndex((n) => n.dataset.id === id);  // where it is now
    }
    show(current + by, false);
  }
  prev.addEventListener("click", () => step(-1));
  next.addEventListener("click", () => step(1));
  closer.addEventListener("click", () => close());
  zoom.addEventListener("click", toggleZoom);
  img.addEventListener("click", toggleZoom);
  remove.addEventListener("click", deleteCurrent);
  // A preview drawn while storage was too busy to make it (the "Preview being made" picture):
  // the photo's state is asked once, and a pending one is asked again until it is made (the
  // viewer's own retry, beside its tile's), then loaded; a damaged one gets the sign.
  img.addEventListener("load", async () => {
    const item = items()[current];
    if (!item || item.dataset.thumbState !== "pending" || item.dataset.lbAsked === img.src) return;
    item.dataset.lbAsked = img.src;
    try {
      const reply = await fetch(`/api/images/${encodeURIComponent(item.dataset.id)}`, { headers: { Accept: "application/json" } });
      const image = reply.ok ? await reply.json() : null;
      if (!image || image.thumbnail_state !== "pending" || items()[current] !== item) return;
      askAgainUntilMade(img, stage, async () => {
        item.dataset.noPreview = "";
        item.dataset.thumbState = "failed";
        if (items()[current] === item) show(current, false);
      });
    } catch (_) { /* left as it is */ }
  });
  // A preview that fails to load (its tile drawn before storage found the file damaged): when
  // the photo's thumbnails failed, the viewer shows the sign instead.
  img.addEventListener("error", async () => {
    const item = items()[current];
    if (!item || "noPreview" in item.dataset || !img.getAttribute("src")) return;
    try {
      const reply = await fetch(`/api/images/${encodeURIComponent(item.dataset.id)}`, { headers: { Accept: "application/json" } });
      const image = reply.ok ? await reply.json() : null;
      if (!image || image.thumbnail_state !== "failed" || items()[current] !== item) return;
      item.dataset.noPreview = image.thumbnail_detail || "";
      show(current, false);
    } catch (_) { /* left as it is */ }
  });
  document.addEventListener("keydown", (e) => {
    if (box.hidden) return;
    if (e.key === "ArrowRight") { e.preventDefault(); step(1); }
    else if (e.key === "ArrowLeft") { e.preventDefault(); step(-1); }
    else if (e.key === "Escape") { e.preventDefault(); close(); }
    else if (e.key === "Delete") { e.preventDefault(); deleteCurrent(); }
    else if (e.key === "Tab") {
      // Keep focus inside the dialog.
      const focusable = Array.from(box.querySelectorAll("button, a[href]"));
      const at = focusable.indexOf(document.activeElement);
      if (e.shiftKey && at <= 0) { e.preventDefault(); focusable[focusable.length - 1].focus(); }
      else if (!e.shiftKey && at === focusable.length - 1) { e.preventDefault(); focusable[0].focus(); }
    }
  });
  let touchX = null;
  stage.addEventListener("touchstart", (e) => { touchX = e.touches.length === 1 ? e.touches[0].clientX : null; }, { passive: true });
  stage.addEventListener("touchend", (e) => {
    if (touchX === null || box.classList.contains("zoomed")) return;
    const dx = e.changedTouches[0].clientX - touchX;
    touchX = null;
    if (Math.abs(dx) > 50) step(dx < 0 ? 1 : -1);
  });
  const fromHash = () => {
    const match = location.hash.match(/^#view=(.+)$/);
    if (!match) { close(true); return; }
    const id = decodeURIComponent(match[1]);
    const index = items().findIndex((n) => n.dataset.id === id);
    if (index >= 0) show(index, false);
    // A shared link to a photo not on this page: its own page opens it in the viewer.
    else if (/^[\w-]+$/.test(id)) location.replace(`/images/${encodeURIComponent(id)}#view=${encodeURIComponent(id)}`);
  };
  window.addEventListener("popstate", fromHash);
  fromHash();
}

// --- selecting many ----------------------------------------------------------------------------

function setupSelection() {
  const form = document.getElementById("bulk-form");
  if (!form) return;
  const count = document.getElementById("selected-count");
  const all = document.getElementById("select-all");
  const none = document.getElementById("select-none");
  all.hidden = false;
  let last = null;
  const boxes = () => Array.from(document.querySelectorAll("figure.tile .pick"));
  const update = () => {
    const picked = boxes().filter((b) => b.checked);
    boxes().forEach((b) => b.closest("figure.tile").classList.toggle("selected", b.checked));
    const n = picked.length;
    count.textContent = n ? `${n} selected` : "Select photos to act on several at once";
    form.classList.toggle("idle", n === 0);
    none.hidden = n === 0;
    document.body.classList.toggle("selecting", n > 0);
    document.documentElement.style.setProperty("--bulk-h", `${form.offsetHeight}px`);
  };
  const toggle = (box, shift) => {
    const list = boxes();
    const target = !box.checked;
    if (shift && last && list.includes(last)) {
      const [a, b] = [list.indexOf(last), list.indexOf(box)].sort((x, y) => x - y);
      list.slice(a, b + 1).forEach((x) => { x.checked = target; });
    } else box.checked = target;
    last = box;
    anchor = box; ranged = [];
    update();
  };
  document.addEventListener("click", (e) => {
    const pick = e.target.closest("figure.tile .pick");
    if (pick) {
      // The checkbox has toggled itself (preventDefault would undo it); a shift-click gives
      // the whole range from the last one clicked the same state.
      const list = boxes();
      if (e.shiftKey && last && last !== pick && list.includes(last)) {
        const [a, b] = [list.indexOf(last), list.indexOf(pick)].sort((x, y) => x - y);
        list.slice(a, b + 1).forEach((x) => { x.checked = pick.checked; });
      }
      last = pick;
      anchor = pick; ranged = [];
      update();
      return;
    }
    if (!document.body.classList.contains("selecting")) return;
    const tile = e.target.closest("figure.tile");
    const box = tile && tile.querySelector(".pick");
    if (!box || e.target.closest(".reveal")) return;
    e.preventDefault();
    toggle(box, e.shiftKey);
  });
  // The keyboard: Space selects the photo in focus (on its checkbox or its link), Shift with
  // an arrow key moves on and selects the range from where selecting started, Shift+Space
  // selects the range up to the photo in focus; plain arrows move between photos.
  let anchor = null;
  let ranged = [];
  const keys = document.getElementById("select-keys");
  if (keys) keys.textContent = "Space selects the photo in focus; Shift with an arrow key, or Shift+Space, selects a range; the arrow keys move between photos.";
  const selectRange = (from, to) => {
    const list = boxes();
    const [a, b] = [list.indexOf(from), list.indexOf(to)].sort((x, y) => x - y);
    const range = list.slice(a, b + 1);
    // Shrinking the range back gives up what it had added, not what was picked before.
    ranged.filter((x) => !range.includes(x)).forEach((x) => { x.checked = false; });
    ranged = range.filter((x) => !x.checked || ranged.includes(x));
    range.forEach((x) => { x.checked = true; });
  };
  const neighbour = (tile, key) => {
    const tiles = boxes().map((b) => b.closest("figure.tile"));
    const at = tiles.indexOf(tile);
    if (key === "ArrowLeft") return tiles[at - 1];
    if (key === "ArrowRight") return tiles[at + 1];
    // Up and down: the nearest row above or below, the photo there closest across.
    const here = tile.getBoundingClientRect();
    const middle = here.left + here.width / 2;
    const down = key === "ArrowDown";
    let best = null;
    let bestRow = null;
    let bestDx = Infinity;
    for (const other of tiles) {
      const r = other.getBoundingClientRect();
      if (down ? r.top <= here.top + here.height / 2 : r.top >= here.top - here.height / 2) continue;
      if (bestRow !== null && (down ? r.top > bestRow + 2 : r.top < bestRow - 2)) continue;
      const dx = Math.abs(r.left + r.width / 2 - middle);
      if (bestRow === null || (down ? r.top < bestRow - 2 : r.top > bestRow + 2) || dx < bestDx) {
        best = other; bestRow = r.top; bestDx = dx;
      }
    }
    return best;
  };
  document.addEventListener("keydown", (e) => {
    const focused = e.target.closest && e.target.closest("figure.tile .pick, figure.tile .thumb-link");
    if (!focused || e.altKey || e.ctrlKey || e.metaKey) return;
    const tile = focused.closest("figure.tile");
    const box = tile.querySelector(".pick");
    if (!box || !boxes().includes(box)) return;
    if (e.key === " ") {
      e.preventDefault();  // the checkbox does not toggle itself as well; the page stays put
      if (e.repeat) return;
      if (e.shiftKey && anchor && anchor !== box && boxes().includes(anchor)) selectRange(anchor, box);
      else { box.checked = !box.checked; anchor = box; ranged = []; }
      last = box;
      update();
    } else if (["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"].includes(e.key)) {
      e.preventDefault();
      const shift = e.shiftKey;
      const move = (next) => {
        const target = next.querySelector(focused.matches(".pick") ? ".pick" : ".thumb-link");
        target.focus();
        target.scrollIntoView({ block: "nearest" });
        if (!shift) return;
        if (!anchor || !boxes().includes(anchor)) { anchor = box; ranged = box.checked ? [] : [box]; }
        selectRange(anchor, next.querySelector(".pick"));
        last = next.querySelector(".pick");
        update();
      };
      const next = neighbour(tile, e.key);
      if (next) move(next);
      // Past the last photo loaded in the gallery, the older ones come in first.
      // A key pressed again while they come moves on from where the last press landed.
      else if (e.key === "ArrowRight" || e.key === "ArrowDown") {
        loadOlder().then((more) => {
          const here = document.activeElement && document.activeElement.closest("figure.tile");
          const again = more && here && neighbour(here, e.key);
          if (again) move(again);
        });
      }
    }
  });
  all.addEventListener("click", () => { boxes().forEach((b) => { b.checked = true; }); update(); });
  none.addEventListener("click", () => { boxes().forEach((b) => { b.checked = false; }); update(); });
  form.addEventListener("submit", (e) => {
    const action = e.submitter ? e.submitter.value : "";
    const n = boxes().filter((b) => b.checked).length;
    if (!n) { e.preventDefault(); count.textContent = "Select at least one photo first"; return; }
    const photos = `${n} photo${n === 1 ? "" : "s"}`;
    if (action === "delete" && !window.confirm(`Move ${photos} to the trash?`)) e.preventDefault();
    if (action === "delete_forever" && !window.confirm(`Delete ${photos} for good? This cannot be undone.`)) e.preventDefault();
  });
  update();
}

// --- infinite scroll ---------------------------------------------------------------------------

// The next page of the gallery, merged into this one (the "Older" link's page); false when
// there is none. Shared by infinite scroll and the viewer's "next" past the last photo.
let olderLoading = null;

function loadOlder() {
  if (olderLoading) return olderLoading;
  const gallery = document.getElementById("gallery");
  const older = document.getElementById("older");
  if (!gallery || !older) return Promise.resolve(false);
  olderLoading = (async () => {
    try {
      const reply = await fetch(older.href);
      if (!reply.ok) return false;
      const doc = new DOMParser().parseFromString(await reply.text(), "text/html");
      // One section per month, in the page's order, whatever page a photo came on.
      const newestFirst = gallery.dataset.order !== "taken_oldest";
      for (const month of doc.querySelectorAll("#gallery section.month")) {
        const key = month.dataset.month;
        const same = gallery.querySelector(`section.month[data-month="${CSS.escape(key)}"]`);
        if (same) {
          same.querySelector(".grid").append(...Array.from(month.querySelectorAll("figure.tile")).map((t) => document.adoptNode(t)));
          continue;
        }
        const after = Array.from(gallery.querySelectorAll("section.month")).find((s) => (newestFirst ? s.dataset.month < key : s.dataset.month > key));
        gallery.insertBefore(document.adoptNode(month), after || null);
      }
      const newer = doc.getElementById("older");
      if (newer) older.href = newer.href; else older.remove();
      bindReveal(gallery);
      document.dispatchEvent(new CustomEvent("tiles:changed"));
      return true;
    } finally { olderLoading = null; }
  })();
  return olderLoading;
}

function setupInfiniteScroll() {
  const gallery = document.getElementById("gallery");
  if (!gallery || !("IntersectionObserver" in window)) return;
  const pager = document.querySelector(".pager");
  if (!pager) return;
  const observer = new IntersectionObserver(async (entries) => {
    if (!entries.some((e) => e.isIntersecting)) return;
    // Observed afresh after each page: when the new photos did not push the link out of
    // reach (a short page, a tall screen), the next page comes in too.
    if (await loadOlder()) { observer.unobserve(pager); observer.observe(pager); }
  }, { rootMargin: "800px" });
  observer.observe(pager);
}

// --- justified rows: every row as wide as the page, photos at their own shape -----------------

// Without this script the CSS flex rows keep each photo's shape but a short row stretches its
// photos; with it, rows are filled greedily to a target height (whichever of "close the row
// before this photo" or "after it" lands nearer the target) and the last row keeps the target.
function justifyGrid(grid) {
  const tiles = Array.from(grid.children).filter((n) => n.matches("figure.tile"));
  const width = grid.clientWidth;
  if (!width || !tiles.length) return;
  const gap = parseFloat(getComputedStyle(grid).columnGap) || 0;
  const target = width < 600 ? 130 : 220;
  const ratio = (t) => parseFloat(t.style.getPropertyValue("--ar")) || 1;
  // Half a pixel spare so rounding never pushes the last photo of a row onto the next.
  const height = (sum, n) => (width - gap * (n - 1) - 0.5) / sum;
  const place = (row, h) => row.forEach((t) => { t.style.flex = `0 0 ${Math.floor(ratio(t) * h * 100) / 100}px`; });
  let row = [];
  let sum = 0;
  for (const tile of tiles) {
    const a = ratio(tile);
    const withIt = height(sum + a, row.length + 1);
    if (withIt > target) { row.push(tile); sum += a; continue; }
    if (row.length) {
      const without = height(sum, row.length);
      if (without - target < target - withIt && without <= target * 1.6) {
        place(row, without);
        row = [tile]; sum = a;
        const alone = height(a, 1);
        if (alone <= target) { place(row, alone); row = []; sum = 0; }
        continue;
      }
    }
    row.push(tile);
    place(row, withIt);
    row = []; sum = 0;
  }
  if (row.length) place(row, Math.min(target, height(sum, row.length)));
}

function setupJustified() {
  const all = () => document.querySelectorAll(".grid.justified");
  const run = () => all().forEach(justifyGrid);
  if (!all().length) return;
  document.documentElement.classList.add("js-justified");
  run();
  let pending = false;
  window.addEventListener("resize", () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; run(); });
  });
  document.addEventListener("tiles:changed", run);
}

// --- the phone menu: the main links behind one button, so the header stays two rows ----------

function setupMenu() {
  const button = document.getElementById("menu-button");
  const nav = document.getElementById("main-nav");
  if (!button || !nav) return;
  const header = button.closest("header");
  header.classList.add("has-menu");
  button.hidden = false;
  const set = (open) => {
    nav.classList.toggle("open", open);
    button.setAttribute("aria-expanded", String(open));
  };
  button.addEventListener("click", () => {
    const open = !nav.classList.contains("open");
    set(open);
    if (open) { const first = nav.querySelector("a, button"); if (first) first.focus(); }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && nav.classList.contains("open")) { set(false); button.focus(); }
  });
  document.addEventListener("click", (e) => {
    if (nav.classList.contains("open") && !header.contains(e.target)) set(false);
  });
}

// --- small things ------------------------------------------------------------------------------

// The gallery's order applies as soon as it is chosen (the Show button is for no script).
function setupOrder() {
  const select = document.getElementById("order");
  if (!select || !select.form) return;
  const go = select.form.querySelector(".order-go");
  if (go) go.hidden = true;
  select.addEventListener("change", () => select.form.submit());
}

function bindReveal(root) {
  (root || document).querySelectorAll(".reveal:not([data-bound])").forEach((button) => {
    button.dataset.bound = "1";
    button.addEventListener("click", () => {
      const scope = button.closest(".tile, .preview") || document;
      scope.querySelectorAll(".blurred").forEach((img) => img.classList.remove("blurred"));
      button.remove();
    });
  });
}

function setupConfirm(root) {
  (root || document).querySelectorAll("form[data-confirm]:not([data-bound])").forEach((form) => {
    form.dataset.bound = "1";
    form.addEventListener("submit", (e) => { if (!window.confirm(form.dataset.confirm)) e.preventDefault(); });
  });
}

// A pending photo's <img> that is still pending once it has loaded drew the placeholder of a
// thumbnail storage was too busy to make (503, "Preview being made", Retry-After). The URL is
// asked again (HEAD, never from the cache) after the gateway's Retry-After (the page's
// data-thumb-retry-s; an <img> cannot read its answer's headers), then after each answer's
// Retry-After, up to RETRY_TRIES times; once it answers the thumbnail, `holder` becomes
// data-thumb-state "ready" and the <img> loads it again; a damaged file found meanwhile calls
// `onFailed`. While it waits, `holder` carries data-thumb-retry (the number of asks so far).
const RETRY_FIRST_S = 2, RETRY_TRIES = 30;

async function askAgainUntilMade(img, holder, onFailed) {
  if (holder.dataset.thumbRetry) return;
  holder.dataset.thumbRetry = "0";
  const src = img.getAttribute("src"), srcset = img.getAttribute("srcset");
  const url = img.currentSrc || img.src;
  let wait = Number(document.body.dataset.thumbRetryS) || RETRY_FIRST_S;
  try {
    for (let tries = 1; tries <= RETRY_TRIES; tries++) {
      await new Promise((done) => setTimeout(done, wait * 1000));
      if (!holder.isConnected) return;
      holder.dataset.thumbRetry = String(tries);
      let reply;
      try { reply = await fetch(url, { method: "HEAD", cache: "no-store" }); } catch (_) { continue; }
      const thumbState = reply.headers.get("X-Thumbnail-State");
      if (reply.status === 503 && thumbState === "pending") {
        wait = Math.min(60, Math.max(1, Number(reply.headers.get("Retry-After")) || RETRY_FIRST_S));
        continue;
      }
      if (thumbState === "failed") { await onFailed(); return; }
      if (!reply.ok) continue;  // storage away for a moment: ask again
      holder.dataset.thumbState = "ready";
      if (img.getAttribute("src") !== src) return;  // the <img> shows something else by now
      img.removeAttribute("srcset"); img.removeAttribute("src");
      if (srcset) img.setAttribute("srcset", srcset);
      img.setAttribute("src", src);
      return;
    }
  } finally {
    delete holder.dataset.thumbRetry;
  }
}

// --- photos whose previews could not be made ---------------------------------------------------

// Storage keeps a file damaged past its header as uploaded but can make no thumbnail of it
// (its thumbnail state is "failed"); the server draws the same sign in place of such a
// tile's thumbnail (_no_preview.html). A tile drawn before the thumbnailer found out asks for
// a thumbnail that answers 404 with a placeholder picture ("No preview", gateway/placeholders.py),
// which the <img> draws; the tile says its thumbnails were pending (data-thumb-state), so the
// photo's state is asked once the <img> has loaded and a failed one gets the sign. An <img>
// that fails all the same (storage away, an older gateway that answered 400) asks the photo's
// state once too, and a failed one gets the sign instead of the browser's broken-image icon (a
// photo not failed is tried again once, a few seconds later).
const SVG_NS = "http://www.w3.org/2000/svg";

function noPreviewSign(name, reason) {
  const sign = el("div", { class: "no-preview", role: "img", "aria-label": `no preview could be made: ${name}` });
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", "np-icon");
  svg.setAttribute("viewBox", "0 0 48 48");
  svg.setAttribute("aria-hidden", "true");
  const shapes = [
    ["rect", { x: 5, y: 9, width: 38, height: 30, rx: 3, fill: "none", stroke: "currentColor", "stroke-width": 2.5 }],
    ["circle", { cx: 16, cy: 19, r: 3.5, fill: "currentColor" }],
    ["path", { d: "M8 35l10-10 6 6 5-5 11 9", fill: "none", stroke: "currentColor", "stroke-width": 2.5, "stroke-linejoin": "round" }],
    ["path", { d: "M7 5l34 38", stroke: "currentColor", "stroke-width": 2.5, "stroke-linecap": "round" }],
  ];
  for (const [tag, attrs] of shapes) {
    const shape = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) shape.setAttribute(k, String(v));
    svg.append(shape);
  }
  sign.append(svg, el("span", { class: "np-title" }, "Preview could not be made"), el("span", { class: "np-name" }, name || ""));
  if (reason !== undefined) {
    sign.append(el("span", { class: "np-reason" },
      `The file is damaged and its picture could not be read${reason ? ` (${reason})` : ""}. The original is kept as it was uploaded: you can still download it or move it to the trash.`));
  }
  return sign;
}

const THUMB_SRC = /\/api\/images\/([^/?#]+)\/thumbnail/;

function setupNoPreview() {
  const asked = new WeakSet();
  async function stateOf(id) {
    try {
      const reply = await fetch(`/api/images/${id}`, { headers: { Accept: "application/json" } });
      return reply.ok ? await reply.json() : null;
    } catch (_) { return null; }
  }
  async function imageOf(img) {
    const match = THUMB_SRC.exec(img.currentSrc || img.src || "");
    const holder = img.closest("[data-thumb-state][data-id]");
    const id = match ? match[1] : holder && encodeURIComponent(holder.dataset.id);
    if (!id || asked.has(img)) return undefined;
    asked.add(img);
    return stateOf(id);
  }
  function showSign(img, image) {
    if (img.id === "preview") { location.reload(); return; }  // the page draws the sign and why
    const tile = img.closest("figure.tile");
    if (tile) { tile.dataset.noPreview = image.thumbnail_detail || ""; tile.dataset.thumbState = "failed"; }
    const sign = noPreviewSign(image.filename);
    sign.title = image.thumbnail_text || "";
    img.replaceWith(sign);
  }
  async function failed(img) {
    const image = await imageOf(img);
    if (image === undefined) return;
    if (!image || image.thumbnail_state !== "failed") {
      setTimeout(() => { const src = img.src; img.removeAttribute("src"); img.src = src; }, 3000);
      return;
    }
    showSign(img, image);
  }
  // A photo whose thumbnails were not made yet when the page was drawn: its first thumbnail
  // request makes them, or finds the file damaged and answers the placeholder picture (which
  // loads like any image). Once its <img> has loaded, its state is asked once; a failed one
  // gets the sign, and the viewer says why.
  async function settled(img) {
    const holder = img.closest('[data-thumb-state="pending"]');
    if (!holder || holder.dataset.thumbRetry) return;  // asked again already
    const image = await imageOf(img);
    if (image === undefined || !image) return;
    holder.dataset.thumbState = image.thumbnail_state;
    if (image.thumbnail_state === "failed") showSign(img, image);
    else if (image.thumbnail_state === "pending") retryLater(img, holder, image);
  }
  function retryLater(img, holder, image) {
    askAgainUntilMade(img, holder, async () => {
      const now = await stateOf(encodeURIComponent(image.id));
      if (now) { holder.dataset.thumbState = "failed"; showSign(img, now); }
    });
  }
  document.addEventListener("error", (e) => {
    if (e.target instanceof HTMLImageElement && e.target.id !== "lb-image") failed(e.target);
  }, true);
  document.addEventListener("load", (e) => {
    if (e.target instanceof HTMLImageElement && e.target.id !== "lb-image") settled(e.target);
  }, true);
  // Those that failed or loaded before this script ran.
  document.querySelectorAll("img").forEach((img) => {
    if (!img.complete || !img.src) return;
    if (img.naturalWidth === 0) failed(img); else settled(img);
  });
}

// --- photos being analysed: they change in place once done, without a reload ----------------

// While a tile (or the image page) shows a photo still being analysed, one light request asks
// which photos are still pending (GET /api/images?status=pending: storage keeps a list per
// status), first after 2 s, then less often (up to every 15 s); each photo that is done is
// fetched once and its tile updated (caption, alt text, state, blur), the image page's labels
// and similar photos swapped in. Nothing is asked while nothing on the page is pending, nor
// while the tab is hidden. Without this script the page shows the new state on reload.
function setupPendingPoll() {
  const FIRST_MS = 2000;
  const LONGEST_MS = 15000;
  let delay = FIRST_MS;
  let timer = null;
  let stopped = false;
  const waiting = () => Array.from(document.querySelectorAll('figure.tile[data-status="pending"], section.preview[data-status="pending"]'));
  const json = async (path) => {
    const reply = await fetch(path, { headers: { Accept: "application/json" } });
    if (reply.status === 401 || reply.status === 403) stopped = true;  // not ours to ask
    return reply.ok ? reply.json() : null;
  };

  let turn = 0;
  const inTurn = (list) => {
    if (list.length <= 8) return list;
    const start = (turn++ * 8) % list.length;
    return [...list, ...list].slice(start, start + 8);
  };

  function schedule() {
    if (timer || stopped || document.hidden || !waiting().length) return;
    timer = setTimeout(round, delay);
  }

  async function round() {
    try {
      const ids = [...new Set(waiting().map((n) => n.dataset.id))];
      if (!ids.length) return;
      let body = null;
      try { body = await json("/api/images?status=pending&page_size=100"); } catch (_) { /* next round */ }
      // The photos that left the pending list are fetched once each. With more pending than
      // one answer holds (a big import), those not in it are checked a few at a time, in turn.
      const still = new Set(body ? body.images.map((i) => i.id) : []);
      const gone = ids.filter((id) => !still.has(id));
      const done = body && !body.next_page_token ? gone : inTurn(gone);
      for (const id of done) {
        try {
          const image = await json(`/api/images/${encodeURIComponent(id)}`);
          if (image && image.status !== "pending") await refresh(image);
        } catch (_) { /* asked again next round */ }
      }
      delay = Math.min(delay * 1.5, LONGEST_MS);
    } finally {
      timer = null;
      schedule();
    }
  }

  async function refresh(image) {
    const selector = `[data-status="pending"][data-id="${CSS.escape(image.id)}"]`;
    for (const node of document.querySelectorAll(`figure.tile${selector}`)) {
      node.dataset.status = image.status;
      const badge = node.querySelector(".badge");
      if (badge && image.status === "ready") badge.remove();
      else if (badge) {
        badge.className = `badge ${image.status}`;
        badge.textContent = (image.status_text || image.status).split(":")[0];
        badge.title = image.status_text || "";
      }
      const label = node.querySelector("figcaption .label");
      if (label && image.confident_label) label.textContent = image.confident_label;
      const thumb = node.querySelector("img.thumb");
      if (thumb && image.alt) thumb.alt = image.alt;
      if (thumb && image.moderated && !thumb.classList.contains("blurred")) {
        node.classList.add("moderated");
        thumb.classList.add("blurred");
        node.querySelector(".thumb-link").after(el("button", { type: "button", class: "reveal" }, "Reveal"));
        bindReveal(node);
      }
    }
    const preview = document.querySelector(`section.preview${selector}`);
    if (preview) await refreshImagePage(preview);
  }

  // The image page: its details (labels, text, colours) and similar photos come in from the
  // page as it is now, unless the user is busy in a form there.
  async function refreshImagePage(preview) {
    const details = document.querySelector(".image-page > .details");
    const busy = details && details.contains(document.activeElement) && document.activeElement.matches("input, textarea, select");
    if (busy) return;
    const reply = await fetch(location.pathname, { headers: { Accept: "text/html" } });
    if (!reply.ok) return;
    const doc = new DOMParser().parseFromString(await reply.text(), "text/html");
    const fresh = doc.querySelector("section.preview[data-id]");
    if (!fresh || fresh.dataset.status === "pending") return;
    for (const part of [".image-page > .details", ".image-page > .related"]) {
      const now = document.querySelector(part);
      const next = doc.querySelector(part);
      if (now && next) now.replaceWith(document.adoptNode(next));
    }
    preview.dataset.status = fresh.dataset.status;
    const page = document.querySelector(".image-page");
    bindReveal(page);
    setupConfirm(page);
    document.dispatchEvent(new CustomEvent("tiles:changed"));
  }

  document.addEventListener("tiles:changed", schedule);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) { delay = FIRST_MS; schedule(); } });
  schedule();
}

// --- favourites: the star is a form; with this script it toggles in place ---------------------

function setupStars() {
  document.addEventListener("submit", (e) => {
    const form = e.target.closest("form.star-form");
    if (!form) return;
    e.preventDefault();
    toggleStar(form);
  });
}

async function toggleStar(form) {
    const button = form.querySelector("button.star");
    const want = form.elements.favourite.value === "1";
    button.disabled = true;
    try {
      const reply = await fetch(`/api/images/${encodeURIComponent(button.dataset.image)}/favourite`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
        body: JSON.stringify({ favourite: want }),
      });
      if (!reply.ok) { button.title = `Could not change: ${await refusal(reply)}`; return; }
      const name = (button.getAttribute("aria-label") || "").split(": ").slice(1).join(": ");
      button.setAttribute("aria-pressed", String(want));
      button.textContent = want ? "\u2605" : "\u2606";
      button.title = want ? "Remove from favourites" : "Add to favourites";
      button.setAttribute("aria-label", `${want ? "remove from favourites" : "add to favourites"}: ${name}`);
      form.elements.favourite.value = want ? "0" : "1";
    } finally {
      button.disabled = false;
    }
}

// After a delete: the photo is in the trash; offer to bring it back.
function offerUndo(id, name) {
  const main = document.querySelector("main") || document.body;
  const old = document.getElementById("deleted-notice");
  if (old) old.remove();
  const notice = el("p", { class: "notice", role: "status", id: "deleted-notice" }, `${name || "The photo"} was moved to the trash. `);
  const undo = el("button", { type: "button", id: "undo-delete" }, "Undo");
  undo.addEventListener("click", async () => {
    const reply = await fetch(`/api/images/${encodeURIComponent(id)}/restore`, { method: "POST", headers: { "X-CSRF-Token": csrfToken() } });
    if (reply.ok) location.reload(); else notice.textContent = `Could not restore: ${await refusal(reply)}`;
  });
  notice.append(undo);
  main.prepend(notice);
}

document.addEventListener("DOMContentLoaded", () => {
  setupJustified(); setupMenu(); setupOrder(); setupUpload(); setupSuggestions(); bindReveal(); setupConfirm(); setupStars();
  setupViewer(); setupSelection(); setupInfiniteScroll(); setupPendingPoll(); setupNoPreview();
});
