// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  // The folded navigation of small screens opens and closes with its button.
  var toggle = document.querySelector(".nav-toggle");
  if (toggle) {
    var bar = toggle.closest(".topbar");
    toggle.hidden = false;
    toggle.addEventListener("click", function () {
      var open = bar.classList.toggle("open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  // Switchers submit on change; their submit buttons are hidden when JS runs.
  document.querySelectorAll("form[data-autosubmit] select").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });

  // Copy buttons: data-copy holds the selector of the field (or the <code>
  // block) to copy.
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var field = document.querySelector(button.getAttribute("data-copy"));
      if (!field) { return; }
      var status = button.parentElement.querySelector(".copy-status");
      var done = function () {
        if (status) { status.textContent = status.getAttribute("data-copied-text") || "OK"; }
      };
      var isField = typeof field.select === "function";
      var text = isField ? field.value : field.textContent;
      var fallback = function () {
        if (isField) {
          field.select();
        } else {
          window.getSelection().selectAllChildren(field);
        }
        document.execCommand("copy"); done();
      };
      if (isField) { field.select(); }
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, fallback);
      } else {
        fallback();
      }
    });
  });

  // Tabs ([data-tabs]): without JavaScript every panel is shown, stacked.
  document.querySelectorAll("[data-tabs]").forEach(function (box) {
    var list = box.querySelector("[role=tablist]");
    if (!list) { return; }
    var tabs = Array.prototype.slice.call(list.querySelectorAll("[role=tab]"));
    var show = function (chosen, focus) {
      tabs.forEach(function (tab) {
        var selected = tab === chosen;
        tab.setAttribute("aria-selected", selected ? "true" : "false");
        tab.tabIndex = selected ? 0 : -1;
        var panel = document.getElementById(tab.getAttribute("aria-controls"));
        if (panel) { panel.hidden = !selected; }
      });
      if (focus) { chosen.focus(); }
    };
    list.hidden = false;
    box.classList.add("tabbed");
    tabs.forEach(function (tab, i) {
      tab.addEventListener("click", function () { show(tab, false); });
      tab.addEventListener("keydown", function (event) {
        var step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
        if (step) {
          event.preventDefault();
          show(tabs[(i + step + tabs.length) % tabs.length], true);
        }
      });
    });
    var first = tabs.filter(function (t) { return t.getAttribute("aria-selected") === "true"; })[0];
    if (first || tabs[0]) { show(first || tabs[0], false); }
  });
})();
