// Hato console, progressive enhancement only: every page works without it.
(function () {
  "use strict";
  var lang = document.documentElement.lang || undefined;
  // Times: the page says UTC; show them in the viewer's own zone.
  var format = new Intl.DateTimeFormat(lang, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"
  });
  document.querySelectorAll("time[datetime]").forEach(function (el) {
    var d = new Date(el.getAttribute("datetime"));
    if (!isNaN(d)) { el.title = el.textContent; el.textContent = format.format(d); }
  });
  // Time ranges typed in the viewer's zone: tell the server its offset.
  document.querySelectorAll("input[data-tz]").forEach(function (el) {
    el.value = String(new Date().getTimezoneOffset());
  });
  // The tenant picker goes as soon as a tenant is picked.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (el) {
    el.addEventListener("change", function () { el.form.submit(); });
  });
  // Ask before revoking or removing.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
})();
