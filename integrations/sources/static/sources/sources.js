// Sources screens: the mapping editor (event type → trigger, action → fields, Send test event)
// and the debugger's self-refreshing table.
(function () {
  "use strict";

  function onReady(fn) {
    if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn);
  }

  function text(tag, value, cls) {
    var el = document.createElement(tag);
    el.textContent = value;
    if (cls) el.className = cls;
    return el;
  }

  onReady(function () {
    var form = document.getElementById("mapping-form");
    if (form) {
      var typeSelect = form.querySelector("[data-event-type]");
      var trigger = form.querySelector("[name=trigger]");
      typeSelect.addEventListener("change", function () {
        if (typeSelect.value) trigger.value = 'type = "' + typeSelect.value + '"';
      });
      form.querySelector("[data-action-select]").addEventListener("change", function (event) {
        form.querySelectorAll("[data-action-fields]").forEach(function (table) {
          var on = table.getAttribute("data-action-fields") === event.target.value;
          table.hidden = !on;
          table.querySelectorAll("select, input").forEach(function (el) { el.disabled = !on; });
        });
      });
      // A field's kind shows the inputs of its directive (if, case, replace) and hides the others.
      form.querySelectorAll("select[name^='kind_']").forEach(function (select) {
        function show() {
          select.closest("tr").querySelectorAll("[data-kind-options]").forEach(function (box) {
            box.hidden = box.getAttribute("data-kind-options") !== select.value;
          });
        }
        select.addEventListener("change", show);
        show();
      });
      form.querySelectorAll("[data-test-run]").forEach(function (button) {
        button.addEventListener("click", function () {
          var data = new FormData(form);
          data.set("store", button.getAttribute("data-test-run"));
          var out = form.querySelector("[data-test-result]");
          out.textContent = "Running…";
          fetch(form.getAttribute("data-test-url"), {method: "POST", body: data, credentials: "same-origin"})
            .then(function (r) { return r.json(); })
            .then(function (result) {
              out.textContent = "";
              var ok = result.matched && !(result.errors && result.errors.length);
              var head = "Errors";
              if (ok && result.stored === "stored") head = "Stored for real: the mapping wrote this record.";
              else if (ok && result.stored) head = "Not stored (" + result.stored + "): the mapping would write this record.";
              else if (ok) head = "The trigger matches; the mapping would write this record (nothing stored):";
              var alert = text("p", head, ok ? "alert alert-ok" : "alert alert-error");
              if (result.stored_url) {
                var link = text("a", "See it in " + result.stored_label + " →");
                link.href = result.stored_url;
                alert.appendChild(document.createTextNode(" "));
                alert.appendChild(link);
              }
              out.appendChild(alert);
              (result.errors || []).forEach(function (e) { out.appendChild(text("p", e, "field-error")); });
              (result.warnings || []).forEach(function (w) {
                out.appendChild(text("p", "In Segment this trigger would mean something else: " + w, "alert alert-warning"));
              });
              if (result.pointer) out.appendChild(text("pre", result.pointer, "mono"));
              if (result.record) out.appendChild(text("pre", JSON.stringify(result.record, null, 2), "mono"));
            })
            .catch(function (e) { out.textContent = "The test failed: " + e; });
        });
      });
    }

    var body = document.querySelector("[data-refresh]");
    if (body) {
      var seconds = parseFloat(body.getAttribute("data-refresh-seconds") || "3");
      setInterval(function () {
        fetch(body.getAttribute("data-refresh"), {credentials: "same-origin"})
          .then(function (r) { if (r.ok) return r.text(); throw new Error(r.status); })
          .then(function (html) {
            // Messages opened stay open across refreshes.
            var open = [];
            body.querySelectorAll("tr[data-detail-of]:not([hidden])").forEach(function (row) {
              open.push(row.getAttribute("data-detail-of"));
            });
            body.innerHTML = html;
            open.forEach(function (id) {
              body.querySelectorAll("tr[data-detail-of]").forEach(function (row) {
                if (row.getAttribute("data-detail-of") === id) row.hidden = false;
              });
            });
          })
          .catch(function () { /* the next tick tries again */ });
      }, seconds * 1000);
    }
  });
})();
