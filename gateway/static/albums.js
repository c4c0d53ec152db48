// Albums: in the viewer (lightbox), an "Add to album" chooser for the photo on screen. The
// album pages, the image page's album box and the selection bar's "Add to album" are plain
// forms and work without this script.
"use strict";

(() => {
  const token = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function make(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text; // never innerHTML: album names are user input
    return node;
  }

  // The id of the photo the viewer shows: its "Details" link is /images/<id>.
  function currentId() {
    const details = document.getElementById("lb-details");
    const path = details ? new URL(details.href, location.href).pathname : "";
    return path.startsWith("/images/") ? decodeURIComponent(path.slice(8)) : "";
  }

  async function setupViewerAlbums() {
    const bar = document.querySelector("#lightbox .lb-bar");
    if (!bar) return;
    const reply = await fetch("/api/albums?page_size=1000", { headers: { Accept: "application/json" } });
    if (!reply.ok) return;
    const albums = (await reply.json()).albums || [];
    if (!albums.length) return;
    const box = make("span", { class: "lb-albums" });
    const select = make("select", { id: "lb-album", "aria-label": "album to add this photo to" });
    albums.forEach((a) => select.append(make("option", { value: a.id }, a.name)));
    const add = make("button", { type: "button", id: "lb-add-album" }, "Add to album");
    const said = make("span", { class: "lb-album-status", id: "lb-album-status", role: "status" });
    box.append(select, add, said);
    // Keys typed here choose an album; they must not move the viewer to another photo.
    box.addEventListener("keydown", (e) => { if (e.key !== "Escape") e.stopPropagation(); });
    const del = document.getElementById("lb-delete");
    bar.insertBefore(box, del || null);
    add.addEventListener("click", async () => {
      const id = currentId();
      if (!id) return;
      add.disabled = true;
      said.textContent = "adding…";
      try {
        const r = await fetch(`/api/albums/${encodeURIComponent(select.value)}/images`, {
          method: "POST",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": token() },
          body: JSON.stringify({ ids: [id] }),
        });
        const body = await r.json().catch(() => ({}));
        if (!r.ok) said.textContent = `Could not add: ${(body.error && body.error.message) || r.status}`;
        else if (body.added && body.added.length) said.textContent = `Added to “${body.album.name}”`;
        else if (body.already_in_album && body.already_in_album.length) said.textContent = `Already in “${body.album.name}”`;
        else said.textContent = "Could not add this photo (not yours?)";
      } finally {
        add.disabled = false;
      }
    });
    // A new photo on screen: the last message was about the previous one.
    new MutationObserver(() => { said.textContent = ""; }).observe(document.getElementById("lb-details"), { attributes: true, attributeFilter: ["href"] });
  }

  document.addEventListener("DOMContentLoaded", () => { setupViewerAlbums(); });
})();
