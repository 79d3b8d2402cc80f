// Usage charts: arrow keys move between days (one tab stop per chart).
// Values show on hover and focus through CSS alone; this only adds keys.
(function () {
  "use strict";
  document.querySelectorAll("[data-chart-slots]").forEach(function (list) {
    var slots = Array.prototype.slice.call(list.children);
    list.addEventListener("keydown", function (event) {
      var at = slots.indexOf(document.activeElement);
      if (at < 0) { return; }
      var to = { ArrowLeft: at - 1, ArrowRight: at + 1, Home: 0, End: slots.length - 1 }[event.key];
      if (to === undefined || to < 0 || to >= slots.length) { return; }
      event.preventDefault();
      slots[at].tabIndex = -1;
      slots[to].tabIndex = 0;
      slots[to].focus();
    });
  });
})();
