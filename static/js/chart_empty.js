/* The text a console chart shows while it has nothing to draw (a Chart.js plugin; dashboard and history charts). */
(function () {
  "use strict";

  // hasData(chart) says whether there is something to draw; options.text (plugins.busEmpty.text) is the message.
  window.busEmptyText = function (hasData) {
    return {
      id: "busEmpty",
      afterDraw: function (chart, _args, options) {
        if (!options.text || hasData(chart)) { return; }
        var area = chart.chartArea;
        var ctx = chart.ctx;
        ctx.save();
        ctx.fillStyle = "#999";
        ctx.textAlign = "center";
        ctx.font = "13px sans-serif";
        ctx.fillText(options.text, (area.left + area.right) / 2, (area.top + area.bottom) / 2);
        ctx.restore();
      }
    };
  };
})();
