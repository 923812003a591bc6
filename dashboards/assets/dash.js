// shopstream dashboards: draws each chart from the numbers its panel carries
// (<script type="application/json" id="...">), with uPlot for time series and ECharts for
// funnels and bars. The same numbers are in a table beside every chart. Panels replaced by
// htmx are drawn again.
(function () {
  "use strict";

  var palette = ["#0b63ce", "#e8710a", "#137333", "#a142f4", "#b3261e"];

  function readData(element) {
    var source = document.getElementById(element.dataset.source);
    if (!source) return null;
    try {
      return JSON.parse(source.textContent);
    } catch (error) {
      return null;
    }
  }

  function lines(element, data) {
    var width = Math.max(element.clientWidth - 16, 240);
    var series = [{}];
    var columns = [data.x];
    data.series.forEach(function (one, index) {
      series.push({ label: one.label, stroke: palette[index % palette.length], width: 2 });
      columns.push(one.values);
    });
    element.textContent = "";
    // Times are read in IST, wherever the browser is.
    var plot = new uPlot(
      { width: width, height: 240, series: series, scales: { x: { time: true } },
        tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Asia/Kolkata"); },
        axes: [{}, { size: 70 }] },
      columns,
      element
    );
    element._chart = plot;
    return data.series.length;
  }

  function echart(element, option, count) {
    element.textContent = "";
    element.style.height = "260px";
    var chart = echarts.init(element, null, { renderer: "svg" });
    option.textStyle = { fontFamily: "'Noto Sans Devanagari', sans-serif" };
    chart.setOption(option);
    element._chart = chart;
    return count;
  }

  function funnel(element, data) {
    return echart(element, {
      animation: false,
      tooltip: { trigger: "item" },
      series: [{ type: "funnel", sort: "descending", left: "10%", width: "80%",
        label: { formatter: "{b}: {c}" },
        data: data.stages.map(function (s) { return { name: s.name, value: s.value }; }) }]
    }, 1);
  }

  function bars(element, data) {
    return echart(element, {
      animation: false,
      tooltip: { trigger: "axis" },
      grid: { left: 160, right: 20, top: 10, bottom: 30 },
      xAxis: { type: "value" },
      yAxis: { type: "category", inverse: true, data: data.labels },
      series: [{ type: "bar", name: data.label, data: data.values, itemStyle: { color: palette[0] } }]
    }, 1);
  }

  function draw(root) {
    (root || document).querySelectorAll(".chart[data-source]").forEach(function (element) {
      var data = readData(element);
      if (!data) return;
      var drawn = 0;
      if (data.kind === "lines") drawn = lines(element, data);
      else if (data.kind === "funnel") drawn = funnel(element, data);
      else if (data.kind === "bars") drawn = bars(element, data);
      element.dataset.series = String(drawn);
      element.dataset.drawn = "1";
    });
  }

  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  // A panel about to be replaced lets its charts go: uPlot and ECharts keep every live
  // chart (and a window listener) until told, and the Today panel is replaced every second.
  document.addEventListener("htmx:beforeSwap", function (event) {
    event.detail.target.querySelectorAll(".chart").forEach(function (element) {
      var chart = element._chart;
      if (!chart) return;
      if (typeof chart.destroy === "function") chart.destroy();
      else if (typeof chart.dispose === "function") chart.dispose();
      element._chart = null;
    });
    // A refresh that failed (503 while analytics catch up, 429) shows what the server
    // said instead of leaving stale numbers up; an ended session goes to sign in.
    var status = event.detail.xhr.status;
    if (status === 401) {
      window.location.assign("/signin?why=expired");
    } else if (status >= 400) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  document.addEventListener("htmx:afterSettle", function (event) { draw(event.target); });
})();
