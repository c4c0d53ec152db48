// imagerepo pages: upload with progress, search suggestions, reveal of moderated images,
// confirmation before delete. Everything also works without this script, only less smoothly.
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

function uploadOne(file, list) {
  const row = el("li", { class: "uploading" });
  row.append(el("span", { class: "name" }, file.name));
  const bar = el("progress", { max: "100", value: "0" });
  row.append(bar);
  const status = el("span", { class: "status" }, "waiting");
  row.append(status);
  list.prepend(row);
  return new Promise((resolve) => {
    const form = new FormData();
    form.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/images");
    xhr.setRequestHeader("X-CSRF-Token", csrfToken());
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) { bar.value = Math.round((e.loaded / e.total) * 100); status.textContent = "uploading"; }
    };
    xhr.upload.onload = () => { status.textContent = "analysing"; };
    xhr.onload = () => {
      bar.value = 100;
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { body = null; }
      const result = body && body.results ? body.results[0] : null;
      status.textContent = "";
      if (result && result.result !== "rejected") {
        row.className = result.result;
        const link = el("a", { href: result.image.links.page }, result.result === "duplicate" ? "stored (duplicate)" : "stored");
        status.append(link);
        if (result.duplicate_of && result.duplicate_of.length) {
          status.append(el("span", { class: "muted" }, " · same bytes as "));
          status.append(el("a", { href: `/images/${encodeURIComponent(result.duplicate_of[0])}`, class: "original" }, "this earlier upload"));
        }
        if (result.image.status === "pending") status.append(el("span", { class: "muted" }, " · analysis pending"));
        if (result.image.status === "failed") status.append(el("span", { class: "error" }, ` · ${result.image.status_detail}`));
      } else {
        row.className = "rejected";
        const message = result ? result.error : (body && body.error ? body.error.message : `HTTP ${xhr.status}`);
        status.append(el("span", { class: "error" }, message));
      }
      resolve();
    };
    xhr.onerror = () => { row.className = "rejected"; status.textContent = "network error"; resolve(); };
    xhr.send(form);
  });
}

async function uploadAll(files, list) {
  // Two at a time: keeps the progress readable and the services busy without flooding them.
  const queue = Array.from(files);
  const workers = [0, 1].map(async () => {
    while (queue.length) await uploadOne(queue.shift(), list);
  });
  await Promise.all(workers);
}

function setupUpload() {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const input = document.getElementById("files");
  const zone = document.getElementById("dropzone");
  const list = document.getElementById("upload-list");
  // With this script, files upload as soon as they are chosen or dropped: no button needed.
  const button = document.getElementById("upload-button");
  if (button) button.hidden = true;
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (input.files.length) uploadAll(input.files, list).then(() => { input.value = ""; });
  });
  input.addEventListener("change", () => { if (input.files.length) uploadAll(input.files, list).then(() => { input.value = ""; }); });
  ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.remove("over"); }));
  zone.addEventListener("drop", (e) => { if (e.dataTransfer.files.length) uploadAll(e.dataTransfer.files, list); });
}

function setupSuggestions() {
  const box = document.getElementById("q");
  const list = document.getElementById("suggestions");
  if (!box || !list) return;
  let timer = null;
  box.addEventListener("input", () => {
    clearTimeout(timer);
    const prefix = box.value.trim();
    if (!prefix) return;
    timer = setTimeout(async () => {
      try {
        const reply = await fetch(`/api/suggest?q=${encodeURIComponent(prefix)}`);
        if (!reply.ok) return;
        const body = await reply.json();
        list.replaceChildren(...body.suggestions.map((s) => el("option", { value: s.text }, `${s.text} (${s.document_count})`)));
      } catch (_) { /* suggestions are a nicety */ }
    }, 150);
  });
}

function setupReveal() {
  document.querySelectorAll(".reveal").forEach((button) => {
    button.addEventListener("click", () => {
      const scope = button.closest(".tile, .preview") || document;
      scope.querySelectorAll(".blurred").forEach((img) => img.classList.remove("blurred"));
      if (scope === document) document.querySelectorAll(".blurred").forEach((img) => img.classList.remove("blurred"));
      button.remove();
    });
  });
}

function setupConfirm() {
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (e) => { if (!window.confirm(form.dataset.confirm)) e.preventDefault(); });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupUpload(); setupSuggestions(); setupReveal(); setupConfirm();
});
