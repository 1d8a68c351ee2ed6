/* History charts of one page: a consumer group's lag, a subscription's attempts, success rate and latency.
 * The page embeds the first hour (<script type="application/json" id="history-data">); the range buttons and a
 * poll every 15 s read the same JSON from the container's data-history-url (?range=1h|6h|24h|7d).
 * Shapes are described in app/services/console_charts.py. Chart.js is vendored under static/vendor/. */
(function () {
  "use strict";

  var root = document.querySelector("[data-history-url]");
  if (!root || typeof Chart === "undefined") { return; }

  var SECOND = 1000;
  var MINUTE = 60 * SECOND;
  var POLL_MS = 15 * SECOND;
  var OK = "#2ca02c", FAILED = "#d62728", LINE = "#1f77b4", RATE = "#333333";
  var kind = root.getAttribute("data-kind");
  var range = root.getAttribute("data-range") || "1h";
  var current = JSON.parse(document.getElementById("history-data").textContent);

  function two(n) { return (n < 10 ? "0" : "") + n; }

  function label(ms, span) {
    var d = new Date(ms);
    var hm = two(d.getHours()) + ":" + two(d.getMinutes());
    return span > 26 * 60 * MINUTE ? two(d.getMonth() + 1) + "-" + two(d.getDate()) + " " + hm : hm;
  }

  // Round steps (1 min .. 1 day) giving at most about eight labels.
  function tickStep(span) {
    var steps = [1, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440].map(function (n) { return n * MINUTE; });
    for (var i = 0; i < steps.length; i++) {
      if (span / steps[i] <= 8) { return steps[i]; }
    }
    return steps[steps.length - 1];
  }

  // Zeros count as nothing: a history of zeros is the same "no data yet" as an empty one.
  var emptyText = window.busEmptyText(function (chart) {
    return chart.data.datasets.some(function (ds) {
      return ds.data.some(function (p) { return p.y !== null && p.y !== 0; });
    });
  });

  function timeAxis(stacked) {
    return {
      type: "linear",
      stacked: stacked,
      offset: false,
      afterBuildTicks: function (axis) {
        var step = tickStep(axis.max - axis.min);
        var ticks = [];
        for (var t = Math.ceil(axis.min / step) * step; t <= axis.max; t += step) { ticks.push({ value: t }); }
        axis.ticks = ticks;
      },
      ticks: { autoSkip: false, maxRotation: 0, callback: function (value) { return label(value, current.until - current.since); } }
    };
  }

  function makeChart(canvasId, config, empty) {
    config.plugins = [emptyText];
    config.options = Object.assign({
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      parsing: false,
      normalized: true,
      interaction: { mode: "nearest", axis: "x", intersect: false },
      plugins: {
        busEmpty: { text: empty },
        legend: { position: "bottom", labels: { boxWidth: 12 } },
        tooltip: { callbacks: { title: function (items) {
          return items.length ? new Date(items[0].parsed.x).toLocaleString() : "";
        } } }
      }
    }, config.options);
    return new Chart(document.getElementById(canvasId), config);
  }

  function lineSet(name, color, yAxis) {
    return { type: "line", label: name, data: [], borderColor: color, backgroundColor: color, yAxisID: yAxis,
             borderWidth: 1.5, pointRadius: 2, pointHoverRadius: 4, spanGaps: false, tension: 0 };
  }

  var charts = {};
  if (kind === "group") {
    charts.lag = makeChart("chart-lag-history", {
      type: "line",
      data: { datasets: [lineSet("lag (events behind)", LINE, "y")] },
      options: { scales: { x: timeAxis(false), y: { beginAtZero: true, ticks: { precision: 0 },
                                                    title: { display: true, text: "events behind" } } } }
    }, "No lag sampled in this range yet (sampled once a minute)");
  } else {
    charts.outcomes = makeChart("chart-sub-outcomes", {
      type: "bar",
      data: { datasets: [
        { type: "bar", label: "succeeded", data: [], backgroundColor: OK, yAxisID: "y", stack: "attempts" },
        { type: "bar", label: "failed", data: [], backgroundColor: FAILED, yAxisID: "y", stack: "attempts" },
        Object.assign(lineSet("success rate (%)", RATE, "rate"), { order: -1 })
      ] },
      options: { scales: {
        x: timeAxis(true),
        y: { stacked: true, beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "attempts" } },
        rate: { position: "right", min: 0, max: 100, grid: { drawOnChartArea: false },
                title: { display: true, text: "success %" } }
      } }
    }, "No delivery attempts in this range");
    charts.latency = makeChart("chart-sub-latency", {
      type: "line",
      data: { datasets: [lineSet("average attempt duration (ms)", LINE, "y")] },
      options: { scales: { x: timeAxis(false), y: { beginAtZero: true, title: { display: true, text: "ms" } } } }
    }, "No delivery attempts in this range");
  }

  function text(id, value) {
    var el = document.getElementById(id);
    if (el) { el.textContent = value; }
  }

  // The current lag per partition, written into the page's table (rows carry data-partition).
  function renderCurrent(view) {
    text("total-lag", view.lag);
    view.partitions.forEach(function (p) {
      var row = document.querySelector('#lag-table tr[data-partition="' + p.partition + '"]');
      if (!row) { return; }
      row.querySelector(".committed").textContent = p.committed === null ? "none" : p.committed;
      row.querySelector(".end").textContent = p.end;
      row.querySelector(".lag").textContent = p.lag;
    });
  }

  // The range asked for, narrowed to the data there is (at least ten buckets): a group or subscription made a
  // few minutes ago is drawn wide, not squeezed into the right edge of an empty week.
  // The right edge is the end of the current bucket: its bar, and the point "now", are not cut in half.
  function setWindow(chart, data, earliest, lastStart) {
    var bucket = data.bucket_s * SECOND;
    var from = earliest === null ? data.since : Math.min(earliest - bucket, data.until - 10 * bucket);
    chart.options.scales.x.min = Math.max(data.since, from);
    chart.options.scales.x.max = Math.max(data.until + bucket / 4, lastStart + bucket);
    chart.update("none");
  }

  function firstX(points, has) {
    for (var i = 0; i < points.length; i++) {
      if (has(points[i])) { return points[i].x; }
    }
    return null;
  }

  function render(data) {
    current = data;
    var half = data.bucket_s * SECOND / 2;  // a bucket's point (and bar) sits at its middle
    if (kind === "group") {
      var pts = data.points.map(function (p) { return { x: p[0] + half, y: p[1] }; });
      pts = pts.filter(function (p) { return p.x < data.now[0]; });
      pts.push({ x: data.now[0], y: data.now[1] });
      charts.lag.data.datasets[0].data = pts;
      // The lag read now stands out: on a young group it is the only point.
      charts.lag.data.datasets[0].pointRadius = pts.map(function (_p, i) { return i === pts.length - 1 ? 4 : 2; });
      setWindow(charts.lag, data, firstX(pts, function (p) { return p.y !== null; }),
                data.points.length ? data.points[data.points.length - 1][0] : data.since);
      renderCurrent(data.current);
    } else {
      var sets = charts.outcomes.data.datasets;
      sets[0].data = data.points.map(function (p) { return { x: p.t + half, y: p.ok }; });
      sets[1].data = data.points.map(function (p) { return { x: p.t + half, y: p.failed }; });
      sets[2].data = data.points.map(function (p) { return { x: p.t + half, y: p.success_rate }; });
      charts.latency.data.datasets[0].data = data.points.map(function (p) { return { x: p.t + half, y: p.latency_ms }; });
      var earliest = firstX(sets[0].data.map(function (p, i) { return { x: p.x, y: p.y + sets[1].data[i].y }; }),
                            function (p) { return p.y > 0; });
      var lastStart = data.points.length ? data.points[data.points.length - 1].t : data.since;
      setWindow(charts.outcomes, data, earliest, lastStart);
      setWindow(charts.latency, data, earliest, lastStart);
      var ok = 0, failed = 0, spent = 0;
      data.points.forEach(function (p) {
        ok += p.ok;
        failed += p.failed;
        spent += p.latency_ms === null ? 0 : p.latency_ms * (p.ok + p.failed);
      });
      text("sub-attempts", (ok + failed).toLocaleString());
      text("sub-success", ok + failed ? (Math.round(1000 * ok / (ok + failed)) / 10) + " %" : "–");
      text("sub-latency", ok + failed ? Math.round(spent / (ok + failed)) + " ms" : "–");
    }
    root.setAttribute("data-loaded", String(data.until));
  }

  function load() {
    var url = root.getAttribute("data-history-url") + "?range=" + encodeURIComponent(range);
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (resp) {
        if (!resp.ok) { throw new Error("history: HTTP " + resp.status); }
        return resp.json();
      })
      .then(render)
      .catch(function (err) { if (window.console) { window.console.warn(err); } });
  }

  Array.prototype.forEach.call(root.querySelectorAll("[data-range]"), function (button) {
    button.addEventListener("click", function () {
      range = button.getAttribute("data-range");
      Array.prototype.forEach.call(root.querySelectorAll("[data-range]"), function (b) {
        b.classList.toggle("active", b === button);
      });
      load();
    });
  });

  window.busHistory = { charts: charts, load: load, data: function () { return current; } };
  render(current);
  setInterval(load, POLL_MS);
}());
