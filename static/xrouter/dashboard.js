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

  // Copy buttons: data-copy holds the selector of the field to copy.
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var field = document.querySelector(button.getAttribute("data-copy"));
      if (!field) { return; }
      var status = button.parentElement.querySelector(".copy-status");
      var done = function () {
        if (status) { status.textContent = status.getAttribute("data-copied-text") || "OK"; }
      };
      field.select();
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done, function () {
          document.execCommand("copy"); done();
        });
      } else {
        document.execCommand("copy"); done();
      }
    });
  });
})();
