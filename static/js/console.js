/* The console's small script: confirmation dialogs, JSON pretty-printing, client-side export of the rows
 * shown (JSON or CSV), the event browser's live tail (a 2-second poll of the page's own JSON: the Socket.IO
 * /live namespace does not exist yet) and replay-job progress polling. No framework, no build step.
 * Everything the server renders keeps working without it; every action is checked again on the server. */
(function () {
  "use strict";

  var POLL_MS = 2000;

  // -- confirmation dialogs: <form data-confirm="..."> -------------------------------------------------
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      ev.preventDefault();
    }
  }, true);

  // -- rows of a page: <script type="application/json" id="..."> ------------------------------------
  function rowsOf(id) {
    var el = document.getElementById(id);
    if (!el) { return []; }
    if (!el._rows) { el._rows = JSON.parse(el.textContent || "[]"); }
    return el._rows;
  }

  function flatten(obj, prefix, out) {
    Object.keys(obj || {}).forEach(function (k) {
      var v = obj[k], name = prefix ? prefix + "." + k : k;
      if (v !== null && typeof v === "object" && !Array.isArray(v) && k !== "data" && k !== "details") {
        flatten(v, name, out);
      } else {
        out[name] = (v !== null && typeof v === "object") ? JSON.stringify(v) : v;
      }
    });
    return out;
  }

  function csvCell(v) {
    if (v === null || v === undefined) { return ""; }
    var s = String(v);
    // A leading =, +, - or @ would be run as a formula by spreadsheet programs.
    if (/^[=+\-@]/.test(s)) { s = "'" + s; }
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }

  function toCsv(rows) {
    var flat = rows.map(function (r) { return flatten(r, "", {}); });
    var columns = [];
    flat.forEach(function (r) {
      Object.keys(r).forEach(function (k) { if (columns.indexOf(k) < 0) { columns.push(k); } });
    });
    var lines = [columns.map(csvCell).join(",")];
    flat.forEach(function (r) { lines.push(columns.map(function (c) { return csvCell(r[c]); }).join(",")); });
    return lines.join("\r\n") + "\r\n";
  }

  function download(name, type, text) {
    var url = URL.createObjectURL(new Blob([text], {type: type}));
    var a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(url); a.remove(); }, 0);
  }

  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest && ev.target.closest("[data-export]");
    if (btn) {
      var rows = rowsOf(btn.getAttribute("data-rows"));
      var name = btn.getAttribute("data-filename") || "export";
      if (btn.getAttribute("data-export") === "csv") {
        download(name + ".csv", "text/csv", toCsv(rows));
      } else {
        download(name + ".json", "application/json", JSON.stringify(rows, null, 2));
      }
      return;
    }
    var fmt = ev.target.closest && ev.target.closest("[data-format-json]");
    if (fmt) {
      fmt.form.querySelectorAll("textarea.json-input").forEach(function (ta) {
        if (!ta.value.trim()) { return; }
        try {
          ta.value = JSON.stringify(JSON.parse(ta.value), null, 2);
          ta.parentNode.classList.remove("has-error");
        } catch (e) {
          ta.parentNode.classList.add("has-error");
        }
      });
      return;
    }
    var copy = ev.target.closest && ev.target.closest("[data-copy]");
    if (copy && navigator.clipboard) {
      navigator.clipboard.writeText(document.getElementById(copy.getAttribute("data-copy")).textContent);
    }
  });

  document.addEventListener("change", function (ev) {
    var all = ev.target.getAttribute && ev.target.getAttribute("data-select-all");
    if (all) {
      ev.target.form.querySelectorAll('input[name="' + all + '"]').forEach(function (box) {
        box.checked = ev.target.checked;
      });
    }
  });

  // -- the event browser's live tail ---------------------------------------------------------------
  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    return td;
  }

  function eventRow(e) {
    var tr = document.createElement("tr");
    tr.className = "event-row tail-row";
    tr.setAttribute("data-partition", e.partition);
    tr.setAttribute("data-offset", e.offset);
    [e.partition, e.offset, e.logtime, e.type, e.key].forEach(function (v) { tr.appendChild(cell(v)); });
    var id = cell(e.id);
    tr.appendChild(id);
    var td = document.createElement("td");
    var details = document.createElement("details");
    var summary = document.createElement("summary");
    var code = document.createElement("code");
    var preview = JSON.stringify("data" in e ? e.data : e.data_base64);
    code.textContent = preview.length > 100 ? preview.slice(0, 97) + "..." : preview;
    summary.appendChild(code);
    var pre = document.createElement("pre");
    pre.className = "event-json";
    pre.textContent = JSON.stringify(e, null, 2);
    details.appendChild(summary);
    details.appendChild(pre);
    td.appendChild(details);
    tr.appendChild(td);
    return tr;
  }

  function startTail(table, status) {
    var cursor = table.getAttribute("data-tail");
    var newestFirst = table.getAttribute("data-order") === "newest";
    var body = table.tBodies[0];
    var rows = rowsOf(table.getAttribute("data-rows"));
    var timer = null;
    var busy = false;

    function poll() {
      if (busy) { return; }
      busy = true;
      var url = table.getAttribute("data-poll-url") + "&tail=" + encodeURIComponent(cursor);
      fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (r) { return r.json().then(function (j) { return {ok: r.ok, body: j}; }); })
        .then(function (res) {
          if (!res.ok) { throw new Error(res.body.error ? res.body.error.message : "poll failed"); }
          cursor = res.body.cursor;
          var empty = body.querySelector(".empty-row");
          if (empty && res.body.items.length) { empty.remove(); }
          res.body.items.forEach(function (e) {
            if (newestFirst) {
              body.insertBefore(eventRow(e), body.firstChild);
              rows.unshift(e);
            } else {
              body.appendChild(eventRow(e));
              rows.push(e);
            }
          });
          status.textContent = "polled " + new Date().toLocaleTimeString() + ", " + res.body.items.length + " new";
        })
        .catch(function (err) { status.textContent = "tail paused: " + err.message; })
        .then(function () { busy = false; });
    }

    return {
      start: function () { poll(); timer = setInterval(poll, POLL_MS); },
      stop: function () { clearInterval(timer); timer = null; status.textContent = "tail off"; }
    };
  }

  var tailBox = document.getElementById("live-tail");
  var eventsTable = document.getElementById("events-table");
  if (tailBox && eventsTable) {
    var tail = startTail(eventsTable, document.getElementById("tail-status"));
    tailBox.addEventListener("change", function () { if (tailBox.checked) { tail.start(); } else { tail.stop(); } });
  }

  // -- replay-job progress -------------------------------------------------------------------------
  function pollJob(tr) {
    var url = tr.getAttribute("data-poll");
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.json(); })
      .then(function (job) {
        var p = job.progress;
        var pct = p.total ? Math.round(100 * p.done / p.total) : (job.status === "succeeded" ? 100 : 0);
        tr.querySelector(".progress-bar").style.width = pct + "%";
        tr.querySelector(".job-counts").textContent =
          p.done + " / " + p.total + " done · " + p.succeeded + " ok · " + p.failed + " failed";
        var label = tr.querySelector(".job-status .label");
        if (label) { label.textContent = job.status; }
        if (job.status === "queued" || job.status === "running") {
          setTimeout(function () { pollJob(tr); }, POLL_MS);
        }
      })
      .catch(function () { setTimeout(function () { pollJob(tr); }, POLL_MS * 5); });
  }

  document.querySelectorAll("tr[data-poll]").forEach(function (tr) {
    setTimeout(function () { pollJob(tr); }, POLL_MS);
  });
}());
