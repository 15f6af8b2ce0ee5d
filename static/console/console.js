// The console's live parts: an element with data-live="URL" is re-fetched every few seconds
// while its data-active is "1" and replaced by the fragment the server renders (htmx-style).
// When the fragment's data-state changes (a round starts labeling, a run finishes), the whole
// page reloads, so its forms and actions match the new state.
(function () {
  "use strict";
  var PERIOD_MS = 2000;

  function poll(element) {
    if (element.dataset.active !== "1") return;
    window.setTimeout(function () {
      fetch(element.dataset.live, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) throw new Error(response.status);
          return response.text();
        })
        .then(function (html) {
          var template = document.createElement("template");
          template.innerHTML = html.trim();
          var fresh = template.content.firstElementChild;
          if (fresh.dataset.state !== element.dataset.state) {
            window.location.reload();
            return;
          }
          element.replaceWith(fresh);
          poll(fresh);
        })
        .catch(function () { poll(element); });  // a hiccup: try again next period
    }, PERIOD_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(poll);
  });
})();
