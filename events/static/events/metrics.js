// Metric screens: the filters editor of the metric form, and charts with a table of the same numbers.
(function () {
  "use strict";

  var PALETTE = ["#4f46e5", "#0ea5e9", "#10b981", "#f59e0b", "#ef4444", "#8b5cf6", "#14b8a6", "#ec4899",
    "#84cc16", "#f97316", "#6366f1", "#06b6d4", "#22c55e", "#eab308", "#e11d48", "#a855f7", "#0d9488",
    "#db2777", "#65a30d", "#ea580c"];
  var NO_VALUE = ["exists", "not_exists"];

  // --- The metric form ------------------------------------------------------------------------

  function propertyToggle(form) {
    var select = form.querySelector("[data-aggregation]");
    var field = form.querySelector("[data-property-field]");
    if (!select || !field) return;
    var counting = select.value === "count";
    var input = field.querySelector("input");
    input.disabled = counting;
    input.required = !counting;
    field.classList.toggle("is-disabled", counting);
  }

  function opToggle(row) {
    var op = row.querySelector("[data-filter-op]").value;
    var value = row.querySelector("input[name=filter_value]");
    var none = NO_VALUE.indexOf(op) >= 0;
    value.disabled = none;
    value.placeholder = none ? "(no value)" : (op === "in" || op === "not_in") ? "a, b or [\"a\", 1]" : "e.g. pro";
  }

  function formSetup(form) {
    propertyToggle(form);
    form.querySelectorAll("[data-filter-row]").forEach(opToggle);
    form.addEventListener("change", function (event) {
      if (event.target.matches("[data-aggregation]")) propertyToggle(form);
      if (event.target.matches("[data-filter-op]")) opToggle(event.target.closest("[data-filter-row]"));
    });
    form.addEventListener("click", function (event) {
      var rows = form.querySelector("[data-filter-rows]");
      if (event.target.closest("[data-filter-add]")) {
        var template = form.querySelector("[data-filter-template]");
        var row = template.content.firstElementChild.cloneNode(true);
        rows.appendChild(row);
        opToggle(row);
        row.querySelector("input").focus();
      }
      var remove = event.target.closest("[data-filter-remove]");
      if (remove) {
        remove.closest("[data-filter-row]").remove();
      }
    });
  }

  // --- Charts ---------------------------------------------------------------------------------

  function datasets(data, stacked) {
    if (!data.groups.length) {
      return [{ label: "Value", data: data.total, backgroundColor: PALETTE[0], borderColor: PALETTE[0],
        type: stacked ? "bar" : "line", cubicInterpolationMode: "monotone", pointRadius: 2, spanGaps: true }];
    }
    return data.groups.map(function (group, i) {
      var color = PALETTE[i % PALETTE.length];
      return { label: group.label, data: group.values, backgroundColor: color, borderColor: color,
        type: stacked ? "bar" : "line", cubicInterpolationMode: "monotone", pointRadius: 2, spanGaps: true, fill: false };
    });
  }

  function chartDraw(canvas, stacked) {
    var data = JSON.parse(document.getElementById(canvas.getAttribute("data-chart")).textContent);
    if (stacked === undefined) stacked = data.stacked;
    if (canvas.chart) canvas.chart.destroy();
    canvas.chart = new window.Chart(canvas, {
      type: stacked ? "bar" : "line",
      data: { labels: data.labels, datasets: datasets(data, stacked) },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { display: data.groups.length > 0, position: "bottom" } },
        scales: {
          x: { stacked: stacked, grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 12 } },
          y: { stacked: stacked, beginAtZero: true, ticks: { precision: 0 } }
        }
      }
    });
    canvas.setAttribute("data-drawn", "true");
  }

  function panelSetup(panel) {
    var canvas = panel.querySelector("canvas[data-chart]");
    if (canvas && window.Chart) chartDraw(canvas);
    panel.addEventListener("click", function (event) {
      var show = event.target.closest("[data-show]");
      if (show) {
        var table = show.getAttribute("data-show") === "table";
        panel.querySelector("[data-chart-view]").hidden = table;
        panel.querySelector("[data-table-view]").hidden = !table;
        panel.querySelectorAll("[data-chart-only]").forEach(function (el) { el.hidden = table; });
        panel.querySelectorAll("[data-show]").forEach(function (b) {
          b.setAttribute("aria-pressed", String(b === show));
        });
        return;
      }
      var stack = event.target.closest("[data-stack]");
      if (stack && canvas && window.Chart) {
        chartDraw(canvas, stack.getAttribute("data-stack") === "stacked");
        panel.querySelectorAll("[data-stack]").forEach(function (b) {
          b.setAttribute("aria-pressed", String(b === stack));
        });
      }
    });
  }

  document.querySelectorAll("[data-metric-form]").forEach(formSetup);
  if (window.Chart) {
    window.Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    window.Chart.defaults.color = "#687080";
  }
  document.querySelectorAll("[data-chart-panel]").forEach(panelSetup);
})();
