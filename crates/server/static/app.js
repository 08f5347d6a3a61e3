// kbsync web UI: the few things a server-rendered page cannot do by itself.
//  - the live progress bar of a knowledge base (Server-Sent Events),
//  - "Connect <datasource>": the sign-in popup and its postMessage answer,
//  - the folder picker (browse data from the API, breadcrumbs, multi-select),
//  - a confirmation before destructive forms.
// Every text from the server or the drive is set with textContent, never as HTML.
"use strict";

(function () {
  function $(root, selector) { return root.querySelector(selector); }

  // --- live progress --------------------------------------------------------------------------
  var STATUS_WORDS = {
    idle: "Not synced yet", syncing: "Syncing…", completed: "Completed",
    completed_with_errors: "Completed with errors", failed: "Failed", cancelled: "Cancelled",
    access_revoked: "Access revoked", file_limit_exceeded: "File limit exceeded",
    needs_reauth: "Re-authorisation required"
  };

  function progress(box) {
    var bar = $(box, "progress");
    var label = $(box, ".progress-label");
    var file = $(box, ".progress-file");
    var failed = $(box, ".failed-live");
    var badge = document.getElementById("kb-badge");
    var wasRunning = box.dataset.running === "true";
    var failures = 0;
    var reloading = false;
    var source = new EventSource(box.dataset.events);

    function show(current, total, running) {
      if (total > 0) {
        bar.max = total;
        bar.value = current;
      }
      if (running) {
        label.textContent = total > 0 ? "Syncing " + current + "/" + total : "Syncing…";
        if (badge) {
          badge.textContent = label.textContent;
          badge.className = "badge busy";
        }
      }
    }
    function reloadSoon() {
      // The page's files and run history are rendered by the server: show the new ones.
      if (reloading) { return; }
      reloading = true;
      source.close();
      setTimeout(function () { window.location.reload(); }, 400);
    }
    function parse(event) {
      try { return JSON.parse(event.data); } catch (e) { return null; }
    }
    source.addEventListener("status", function (event) {
      var s = parse(event);
      if (!s) { return; }
      box.dataset.status = s.status;
      if (s.running) {
        wasRunning = true;
        show(s.current, s.total, true);
      } else {
        file.textContent = "";
        if (s.status === "completed" || s.status === "completed_with_errors") { bar.max = 1; bar.value = 1; }
        if (wasRunning) {
          label.textContent = STATUS_WORDS[s.status] || s.status;
          reloadSoon();
        }
      }
    });
    source.addEventListener("progress", function (event) {
      var p = parse(event);
      if (!p) { return; }
      wasRunning = true;
      show(p.current, p.total, true);
      file.textContent = p.file || "";
    });
    source.addEventListener("file_failed", function (event) {
      var f = parse(event);
      if (!f) { return; }
      failures += 1;
      failed.hidden = false;
      failed.textContent = failures + " file(s) failed so far; the last: " + f.name + ": " + f.reason;
    });
    source.addEventListener("finished", function (event) {
      var f = parse(event);
      if (!f) { return; }
      if (f.status === "completed_with_errors") {
        label.textContent = "Completed with " + f.failed + (f.failed === 1 ? " error" : " errors");
      } else {
        label.textContent = STATUS_WORDS[f.status] || f.status;
      }
      if (f.status === "completed" || f.status === "completed_with_errors") { bar.max = 1; bar.value = 1; }
      reloadSoon();
    });
    // The Open WebUI card: publishing progress live, the page again once a publish ends.
    var publishing = document.getElementById("openwebui-status");
    var lastPublish = null;
    source.addEventListener("publish", function (event) {
      var p = parse(event);
      if (!p || !publishing) { return; }
      if (p.status === "publishing") {
        publishing.textContent = p.total > 0 ? "publishing " + p.done + "/" + p.total : "publishing";
        publishing.className = "badge busy";
      }
      if (lastPublish !== null && lastPublish !== p.status && p.status !== "publishing") { reloadSoon(); }
      lastPublish = p.status;
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  // --- connect popup --------------------------------------------------------------------------
  function say(link, text, href, hrefText) {
    var scope = link.closest("section, main") || document;
    var status = $(scope, ".connect-status") || $(document, ".connect-status");
    if (!status) { return; }
    status.textContent = text;
    if (href) {
      var a = document.createElement("a");
      a.href = href;
      a.target = "_blank";
      a.rel = "opener";
      a.textContent = hrefText;
      status.appendChild(document.createTextNode(" "));
      status.appendChild(a);
    }
  }

  function connect(link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      var kb = link.dataset.kb;
      var done = false;
      var popup = window.open(link.href, "kbsync-connect-" + kb, "popup,width=520,height=720");
      if (!popup) {
        say(link, "The browser blocked the sign-in window. Allow pop-ups for this site and try again, or", link.href, "open it in a new tab.");
        return;
      }
      say(link, "Waiting for you to sign in in the other window…");
      function onMessage(msg) {
        if (msg.origin !== window.location.origin || msg.source !== popup) { return; }
        var data = msg.data || {};
        if (data.knowledge_id && data.knowledge_id !== kb) { return; }
        if (data.type === "kbsync-auth-success") {
          done = true;
          cleanup();
          say(link, "Connected.");
          window.location.assign(link.dataset.after || window.location.href);
        } else if (data.type === "kbsync-auth-error") {
          done = true;
          cleanup();
          say(link, "The connection failed: " + (data.error || "unknown error") + ".");
        }
      }
      var watch = setInterval(function () {
        if (popup.closed && !done) {
          cleanup();
          say(link, "The sign-in window was closed before the connection was made.");
        }
      }, 500);
      function cleanup() {
        clearInterval(watch);
        window.removeEventListener("message", onMessage);
      }
      window.addEventListener("message", onMessage);
    });
  }

  // --- picker ---------------------------------------------------------------------------------
  function picker(box) {
    // What the datasource calls each kind of row (from the registry, through the page).
    var KINDS = { drive: "drive", site: "site", folder: "folder", file: "file" };
    try { KINDS = JSON.parse(box.dataset.kinds) || KINDS; } catch (e) { /* keep the plain words */ }
    var list = $(box, ".picker-list");
    var crumbs = $(box, ".picker-crumbs");
    var status = $(box, ".picker-status");
    var form = $(box, ".picker-form");
    var picked = $(box, ".picked-items");
    var summary = $(box, ".picked-summary");
    var submit = $(form, "button[type=submit]");
    var selected = new Map();
    // The way down: [{name, drive_id, item_id}]; the first entry is the top level.
    var trail = [{ name: box.dataset.root || "Top", drive_id: null, item_id: null, path: null }];

    function key(driveId, itemId) { return driveId + "/" + itemId; }

    function pathOf(name) {
      // The display path of an entry at the current level: folder names below the drive.
      var parts = [];
      for (var i = 0; i < trail.length; i++) {
        if (trail[i].path !== null && trail[i].path !== undefined) { parts.push(trail[i].path); }
      }
      return "/" + parts.concat(name ? [name] : []).join("/");
    }

    function renderSelection() {
      picked.textContent = "";
      var names = [];
      selected.forEach(function (item) {
        var input = document.createElement("input");
        input.type = "hidden";
        input.name = "item";
        input.value = JSON.stringify(item);
        picked.appendChild(input);
        names.push(item.name);
      });
      submit.disabled = selected.size === 0;
      summary.textContent = selected.size === 0 ? "Nothing selected."
        : selected.size + " selected: " + names.join(", ");
    }

    function renderCrumbs() {
      crumbs.textContent = "";
      trail.forEach(function (step, i) {
        if (i > 0) {
          var sep = document.createElement("span");
          sep.setAttribute("aria-hidden", "true");
          sep.textContent = "›";
          crumbs.appendChild(sep);
        }
        var b = document.createElement("button");
        b.type = "button";
        b.textContent = step.name;
        if (i === trail.length - 1) { b.setAttribute("aria-current", "location"); }
        b.addEventListener("click", function () {
          trail = trail.slice(0, i + 1);
          load();
        });
        crumbs.appendChild(b);
      });
    }

    function pickable(entry) {
      if (entry.kind === "drive") {
        return { type: "folder", drive_id: entry.drive_id || entry.id, item_id: "root", name: entry.name, path: "/" };
      }
      if (entry.kind === "folder" || entry.kind === "file") {
        return { type: entry.kind, drive_id: entry.drive_id || "", item_id: entry.id, name: entry.name, path: pathOf(entry.name) };
      }
      return null; // a site is a place to go into, not something to sync
    }

    function row(entry) {
      var li = document.createElement("li");
      var item = pickable(entry);
      var label = document.createElement("label");
      if (item && item.drive_id) {
        var box = document.createElement("input");
        box.type = "checkbox";
        box.checked = selected.has(key(item.drive_id, item.item_id));
        box.addEventListener("change", function () {
          if (box.checked) { selected.set(key(item.drive_id, item.item_id), item); }
          else { selected.delete(key(item.drive_id, item.item_id)); }
          renderSelection();
        });
        label.appendChild(box);
      } else {
        var spacer = document.createElement("span");
        spacer.className = "nocheck";
        label.appendChild(spacer);
      }
      var kind = document.createElement("span");
      kind.className = "kind kind-" + entry.kind;
      kind.textContent = KINDS[entry.kind] || entry.kind;
      label.appendChild(kind);
      var name = document.createElement("span");
      name.className = "entry-name";
      name.textContent = entry.name;
      label.appendChild(name);
      if (entry.kind !== "file" && entry.child_count !== null && entry.child_count !== undefined) {
        var count = document.createElement("span");
        count.className = "muted small";
        count.textContent = entry.child_count + " item" + (entry.child_count === 1 ? "" : "s");
        label.appendChild(count);
      }
      li.appendChild(label);
      if (entry.kind !== "file") {
        var open = document.createElement("button");
        open.type = "button";
        open.className = "open";
        open.textContent = "Open";
        open.setAttribute("aria-label", "Open " + entry.name);
        open.addEventListener("click", function () {
          var step = { name: entry.name, drive_id: entry.drive_id || entry.id, item_id: null, path: null };
          if (entry.kind === "folder") { step.item_id = entry.id; step.path = entry.name; }
          trail.push(step);
          load();
        });
        li.appendChild(open);
      }
      return li;
    }

    function load() {
      renderCrumbs();
      list.textContent = "";
      status.textContent = "Loading…";
      var here = trail[trail.length - 1];
      var url = box.dataset.browse;
      if (here.drive_id) { url += "&drive_id=" + encodeURIComponent(here.drive_id); }
      if (here.item_id) { url += "&item_id=" + encodeURIComponent(here.item_id); }
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          return response.json().catch(function () { return {}; }).then(function (body) {
            if (!response.ok) {
              var message = body && body.error ? body.error.message : "HTTP " + response.status;
              throw new Error(message);
            }
            return body;
          });
        })
        .then(function (body) {
          var items = body.items || [];
          status.textContent = items.length === 0 ? "This place is empty." : "";
          items.forEach(function (entry) { list.appendChild(row(entry)); });
          var first = $(list, "input, button");
          if (first && trail.length > 1) { first.focus(); }
        })
        .catch(function (error) {
          status.textContent = "Could not load this place: " + error.message;
        });
    }

    renderSelection();
    load();
  }

  function confirmForms(form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("sync-progress");
    if (box && window.EventSource) { progress(box); }
    document.querySelectorAll("a[data-connect]").forEach(connect);
    var pick = document.getElementById("picker");
    if (pick) { picker(pick); }
    document.querySelectorAll("form[data-confirm]").forEach(confirmForms);
  });
})();
