// Small progressive enhancements for the screens: copy buttons, dialogs, confirmations.
(function () {
  "use strict";

  function copyText(text, button) {
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      button.classList.add("copied");
      setTimeout(function () { button.textContent = label; button.classList.remove("copied"); }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallbackCopy(text); done(); });
    } else {
      fallbackCopy(text);
      done();
    }
  }

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "absolute";
    area.style.left = "-9999px";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* nothing more to try */ }
    document.body.removeChild(area);
  }

  document.addEventListener("click", function (event) {
    var copy = event.target.closest("[data-copy]");
    if (copy) {
      var source = document.querySelector(copy.getAttribute("data-copy"));
      if (source) copyText(source.textContent.trim(), copy);
      return;
    }
    var opener = event.target.closest("[data-open-dialog]");
    if (opener) {
      var dialog = document.querySelector(opener.getAttribute("data-open-dialog"));
      if (dialog) {
        dialog.showModal();
        var first = dialog.querySelector("input:not([type=hidden])");
        if (first) first.focus();
      }
      return;
    }
    var toggle = event.target.closest("[data-toggle-next]");
    if (toggle) {
      // The properties of an event: the next row of a table, or the next element.
      var row = toggle.closest("tr");
      var target = row ? row.nextElementSibling : toggle.nextElementSibling;
      if (target) target.hidden = !target.hidden;
      return;
    }
    var closer = event.target.closest("[data-close-dialog]");
    if (closer) {
      closer.closest("dialog").close();
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (!question || form.dataset.confirmed === "yes") return;
    event.preventDefault();
    var dialog = document.getElementById("confirm-dialog");
    if (!dialog) { if (window.confirm(question)) { form.dataset.confirmed = "yes"; form.submit(); } return; }
    dialog.querySelector("[data-confirm-text]").textContent = question;
    dialog.returnValue = "";
    dialog.addEventListener("close", function onClose() {
      dialog.removeEventListener("close", onClose);
      if (dialog.returnValue === "ok") { form.dataset.confirmed = "yes"; form.submit(); }
    });
    dialog.showModal();
  });

  // A part of a form shown only while a control has a value: data-show-if="region=custom"
  // (a radio group, a select or a checkbox, "on" when ticked). Without JS everything shows.
  function showIfMatches(element) {
    var rule = element.getAttribute("data-show-if").split("=");
    var form = element.closest("form");
    if (!form) return;
    var controls = form.querySelectorAll('[name="' + rule[0] + '"]');
    var value = null;
    controls.forEach(function (c) {
      if (c.type === "radio" || c.type === "checkbox") { if (c.checked) value = c.value; }
      else value = c.value;
    });
    element.hidden = value !== rule[1];
  }
  function refreshShowIf() { document.querySelectorAll("[data-show-if]").forEach(showIfMatches); }
  refreshShowIf();

  document.addEventListener("change", function (event) {
    if (event.target.matches("select[data-navigate]")) window.location = event.target.value;
    refreshShowIf();
  });
})();
