/* Console dashboard: the last hour from the snapshot URL, then one Socket.IO "tick" a second on /metrics.
 * Shapes are described in app/services/dashboard.py. Chart.js and the Socket.IO client are vendored
 * under static/vendor/ (no CDN). */
(function () {
  "use strict";

  var root = document.getElementById("bus-dashboard");
  if (!root || typeof Chart === "undefined" || typeof io === "undefined") {
    return;
  }

  var SECOND = 1000;
  var MINUTE = 60 * SECOND;
  var HOUR = 60 * MINUTE;
  // Per-second points older than this are folded into one average a minute: an hour stays light to draw.
  var KEEP_SECONDS_MS = 10 * MINUTE;
  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
                 "#7f7f7f", "#d62728"];
  var FIXED = { succeeded: "#2ca02c", failed: "#d62728", "": "#d62728" };

  var state = { rangeMs: HOUR, until: Date.now(), from: Date.now() - HOUR, lastTick: null, gauges: {}, synced: false };

  function two(n) { return (n < 10 ? "0" : "") + n; }

  function clock(ms, withSeconds) {
    var d = new Date(ms);
    return two(d.getHours()) + ":" + two(d.getMinutes()) + (withSeconds ? ":" + two(d.getSeconds()) : "");
  }

  function upsert(points, x, y) {
    var i = points.length - 1;
    while (i >= 0 && points[i].x > x) { i--; }
    if (i >= 0 && points[i].x === x) { points[i].y = y; return; }
    points.splice(i + 1, 0, { x: x, y: y });
  }

  // One line: per-minute points (roll-ups, folded seconds) and per-second points (live), each sorted by time.
  function Series(kind) {
    this.kind = kind;
    this.minutes = [];
    this.seconds = [];
  }

  Series.prototype.fold = function (now) {
    var limit = now - KEEP_SECONDS_MS;
    while (this.seconds.length && this.seconds[0].x < limit) {
      var start = this.seconds[0].x - (this.seconds[0].x % MINUTE);
      var sum = 0;
      var n = 0;
      while (this.seconds.length && this.seconds[0].x < start + MINUTE) {
        sum += this.seconds.shift().y;
        n += 1;
      }
      // A rate's minute is its average per second (seconds without events are zeros); a gauge's, its mean.
      upsert(this.minutes, start + 30 * SECOND, this.kind === "rate" ? sum / 60 : sum / n);
    }
    var oldest = now - HOUR - 2 * MINUTE;
    while (this.minutes.length && this.minutes[0].x < oldest) { this.minutes.shift(); }
    while (this.seconds.length && this.seconds[0].x < oldest) { this.seconds.shift(); }
  };

  Series.prototype.points = function () { return this.minutes.concat(this.seconds); };

  var emptyText = window.busEmptyText(function (chart) {
    return chart.data.datasets.some(function (ds) { return ds.data.length > 0; });
  });

  function makeChart(id, kind, unit, empty, integer) {
    var chart = new Chart(document.getElementById(id), {
      type: "line",
      data: { datasets: [] },
      plugins: [emptyText],
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        parsing: false,
        normalized: true,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        elements: { point: { radius: 0, hitRadius: 6 }, line: { borderWidth: 1.5, tension: 0 } },
        scales: {
          x: {
            type: "linear",
            // Ticks of our own at round times (Chart.js's linear ticks would fall on odd seconds).
            afterBuildTicks: function (axis) {
              var step = tickStep(axis.max - axis.min);
              var ticks = [];
              for (var t = Math.ceil(axis.min / step) * step; t <= axis.max; t += step) { ticks.push({ value: t }); }
              axis.ticks = ticks;
            },
            ticks: {
              autoSkip: false,
              callback: function (value) { return clock(value, state.until - state.from <= 15 * MINUTE); }
            }
          },
          y: { beginAtZero: true, title: { display: true, text: unit }, ticks: integer ? { precision: 0 } : {} }
        },
        plugins: {
          busEmpty: { text: empty },
          legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: { callbacks: { title: function (items) { return items.length ? clock(items[0].parsed.x, true) : ""; } } }
        }
      }
    });
    return { chart: chart, kind: kind, series: {} };
  }

  var charts = {
    events: makeChart("chart-events", "rate", "events / s", "No events in the last hour", false),
    deliveries: makeChart("chart-deliveries", "rate", "deliveries / s", "", false),
    lag: makeChart("chart-lag", "gauge", "events behind", "No consumer groups yet", true),
    dead: makeChart("chart-dead", "gauge", "dead letters", "", true)
  };

  function labelOf(c, key) {
    if (c === charts.dead) { return "dead letters"; }
    if (c === charts.lag) {
      var slash = key.indexOf("/");
      var stream = key.slice(0, slash);
      var group = key.slice(slash + 1);
      // Subscriptions read through groups named "__sub.<subscription id>".
      return group.indexOf("__sub.") === 0 ? stream + " → webhook " + group.slice(6, 14) : stream + " / " + group;
    }
    return key;
  }

  function seriesOf(c, key) {
    var s = c.series[key];
    if (s) { return s; }
    s = c.series[key] = new Series(c.kind);
    var index = c.chart.data.datasets.length;
    var color = Object.prototype.hasOwnProperty.call(FIXED, key) && c !== charts.events && c !== charts.lag
      ? FIXED[key] : PALETTE[index % PALETTE.length];
    c.chart.data.datasets.push({ label: labelOf(c, key), data: [], borderColor: color, backgroundColor: color, busKey: key });
    return s;
  }

  // Deliveries are drawn summed over streams: {stream: [[t, n]]} -> [[t, total]].
  function sumByTime(bySubject) {
    var totals = {};
    Object.keys(bySubject || {}).forEach(function (subject) {
      bySubject[subject].forEach(function (p) { totals[p[0]] = (totals[p[0]] || 0) + p[1]; });
    });
    return Object.keys(totals).map(function (t) { return [Number(t), totals[t]]; });
  }

  // Rates: points before liveFrom are minutes; every second of [liveFrom, until) is set on every line (0 if absent).
  function applyRates(c, bySubject, liveFrom, until) {
    Object.keys(bySubject).forEach(function (key) { seriesOf(c, key); });
    Object.keys(c.series).forEach(function (key) {
      var s = c.series[key];
      var live = {};
      (bySubject[key] || []).forEach(function (p) {
        if (p[0] < liveFrom) { upsert(s.minutes, p[0], p[1]); } else { live[p[0]] = p[1]; }
      });
      for (var t = liveFrom; t < until; t += SECOND) { upsert(s.seconds, t, live[t] || 0); }
    });
  }

  function applyGauges(c, bySubject, liveFrom) {
    Object.keys(bySubject || {}).forEach(function (key) {
      var s = seriesOf(c, key);
      bySubject[key].forEach(function (p) { upsert(p[0] < liveFrom ? s.minutes : s.seconds, p[0], p[1]); });
    });
  }

  function apply(payload) {
    var rates = payload.rates || {};
    var gauges = payload.gauges || {};
    applyRates(charts.events, rates.events_in || {}, payload.live_from, payload.until);
    applyRates(charts.deliveries, { succeeded: sumByTime(rates.deliveries_ok), failed: sumByTime(rates.deliveries_failed) },
               payload.live_from, payload.until);
    applyGauges(charts.lag, gauges.consumer_lag, payload.live_from);
    applyGauges(charts.dead, gauges.dead_letters || { "": [] }, payload.live_from);
    // Server time: a browser clock that runs ahead or behind must not shift the charts.
    state.until = state.synced ? Math.max(state.until, payload.until) : payload.until;
    state.synced = true;
    state.gauges = gauges;
    render();
  }

  // The sum over lines (``keys``, default all) of each one's per-second point at ``at``.
  function lastOf(c, keys, at) {
    var total = 0;
    (keys || Object.keys(c.series)).forEach(function (key) {
      var pts = c.series[key] ? c.series[key].seconds : [];
      for (var i = pts.length - 1; i >= 0 && pts[i].x >= at; i--) {
        if (pts[i].x === at) { total += pts[i].y; }
      }
    });
    return total;
  }

  // The sum of each subject's newest value in the last payload's gauges (groups gone since are not counted).
  function newest(bySubject) {
    var total = 0;
    Object.keys(bySubject || {}).forEach(function (key) {
      var pts = bySubject[key];
      if (pts.length) { total += pts[pts.length - 1][1]; }
    });
    return total;
  }

  function fmt(value) {
    if (value >= 100) { return Math.round(value).toLocaleString(); }
    return (Math.round(value * 10) / 10).toLocaleString();
  }

  function renderTiles() {
    var last = state.until - SECOND;
    document.getElementById("tile-events").textContent = fmt(lastOf(charts.events, null, last));
    document.getElementById("tile-ok").textContent = fmt(lastOf(charts.deliveries, ["succeeded"], last));
    var failed = lastOf(charts.deliveries, ["failed"], last);
    document.getElementById("tile-failed").textContent = fmt(failed);
    document.getElementById("tile-failed").classList.toggle("dash-bad", failed > 0);
    document.getElementById("tile-lag").textContent = fmt(newest(state.gauges.consumer_lag));
    var dead = newest(state.gauges.dead_letters);
    document.getElementById("tile-dead").textContent = fmt(dead);
    document.getElementById("tile-dead").classList.toggle("dash-bad", dead > 0);
  }

  // Round steps (10 s .. 15 min) giving at most about eight labels: times read as 05:20, 05:25, ...
  function tickStep(span) {
    var steps = [10, 15, 30, 60, 120, 300, 600, 900].map(function (n) { return n * SECOND; });
    for (var i = 0; i < steps.length; i++) {
      if (span / steps[i] <= 8) { return steps[i]; }
    }
    return steps[steps.length - 1];
  }

  function render() {
    var earliest = state.until;
    Object.keys(charts).forEach(function (name) {
      var c = charts[name];
      c.chart.data.datasets.forEach(function (ds) {
        var s = c.series[ds.busKey];
        s.fold(state.until);
        ds.data = s.points();
        // A line of one or two points (a group sampled for the first time) would not show without its dots.
        ds.pointRadius = ds.data.length < 3 ? 3 : 0;
        if (ds.data.length) { earliest = Math.min(earliest, ds.data[0].x); }
      });
    });
    // The window is the chosen range, narrowed to the data there is: a young bus shows its few minutes
    // wide, not squeezed into the right edge of an empty hour.
    state.from = Math.max(state.until - state.rangeMs, Math.min(earliest, state.until - MINUTE));
    Object.keys(charts).forEach(function (name) {
      var c = charts[name];
      c.chart.options.scales.x.min = state.from;
      c.chart.options.scales.x.max = state.until;
      c.chart.update("none");
    });
    renderTiles();
  }

  var status = document.getElementById("dash-status");
  function setStatus(text, kind) {
    status.textContent = text;
    status.className = "label label-" + kind;
  }

  Array.prototype.forEach.call(document.querySelectorAll("#dash-range [data-range]"), function (button) {
    button.addEventListener("click", function () {
      state.rangeMs = Number(button.getAttribute("data-range")) * SECOND;
      Array.prototype.forEach.call(document.querySelectorAll("#dash-range [data-range]"), function (b) {
        b.classList.toggle("active", b === button);
      });
      render();
    });
  });

  function connect() {
    // WebSocket only: several web processes need no sticky sessions, Redis carries the rooms between them.
    var socket = io(root.getAttribute("data-namespace"), { transports: ["websocket"], reconnectionDelayMax: 5000 });
    socket.on("connect", function () { setStatus("live", "success"); });
    socket.on("disconnect", function () { setStatus("reconnecting…", "warning"); });
    socket.on("connect_error", function (err) {
      setStatus(err && err.message === "forbidden" ? "not allowed" : "offline", "danger");
    });
    socket.on("tick", function (payload) {
      state.lastTick = payload;
      apply(payload);
    });
    window.busDashboard.socket = socket;
  }

  window.busDashboard = { charts: charts, state: state, apply: apply };
  render();
  fetch(root.getAttribute("data-snapshot-url"), { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(function (resp) {
      if (!resp.ok) { throw new Error("snapshot: HTTP " + resp.status); }
      return resp.json();
    })
    .then(function (snapshot) { apply(snapshot); })
    .catch(function (err) {
      setStatus("history unavailable", "warning");
      if (window.console) { window.console.warn(err); }
    })
    .then(connect);
}());
