// The subscription editor's live preview: the mapping run on the event as you type (nothing is sent).
(function () {
  var form = document.getElementById("subscription-form");
  if (!form) return;
  var eventBox = document.getElementById("preview-event");
  var out = document.getElementById("preview-result");
  var timer = null;

  function block(tag, text, cls) {
    var el = document.createElement(tag);
    el.textContent = text;
    if (cls) el.className = cls;
    return el;
  }

  function run() {
    var data = new FormData();
    data.set("csrfmiddlewaretoken", form.querySelector("[name=csrfmiddlewaretoken]").value);
    data.set("trigger", form.querySelector("[name=trigger]").value);
    data.set("fields", form.querySelector("[name=fields]").value);
    data.set("event", eventBox.value);
    fetch(form.getAttribute("data-preview-url"), {method: "POST", body: data, credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (result) {
        out.textContent = "";
        if (result.matched === false && result.ok) {
          out.appendChild(block("p", "The trigger does not match this event: nothing would be sent.", "alert alert-warning"));
          return;
        }
        (result.errors || []).forEach(function (e) { out.appendChild(block("p", e, "alert alert-error")); });
        if (result.message) {
          out.appendChild(block("p", "The message that would be stored and sent:", "alert alert-ok"));
          out.appendChild(block("pre", JSON.stringify(result.message, null, 2), "mono small"));
        } else if (result.values) {
          out.appendChild(block("pre", JSON.stringify(result.values, null, 2), "mono small"));
        }
      })
      .catch(function (e) { out.textContent = "The preview failed: " + e; });
  }

  function soon() {
    clearTimeout(timer);
    timer = setTimeout(run, 250);
  }
  form.addEventListener("input", soon);
  eventBox.addEventListener("input", soon);
  run();
})();
