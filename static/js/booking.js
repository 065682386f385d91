// What the browser does itself: tick the seat-hold countdown every second, show departure
// times in the viewer's time zone, and keep a sideways-scrolled cabin in place when htmx
// re-renders it. Polling and forms are htmx's job.
(function () {
  "use strict";

  // Server clock minus browser clock, from the server time sent with each countdown fragment:
  // the countdown follows the server's absolute deadline, whatever the browser's clock says.
  var offsets = new WeakMap();

  function pad(n) { return String(n).padStart(2, "0"); }

  function tick() {
    document.querySelectorAll("[data-expires-at][data-running='true']").forEach(function (panel) {
      if (!offsets.has(panel)) {
        offsets.set(panel, Date.parse(panel.dataset.serverTime) - Date.now());
      }
      var remaining = Date.parse(panel.dataset.expiresAt) - (Date.now() + offsets.get(panel));
      var seconds = Math.max(0, Math.ceil(remaining / 1000));
      var clock = panel.querySelector("[data-clock]");
      var note = panel.querySelector("[data-clock-note]");
      if (!clock) { return; }
      clock.textContent = pad(Math.floor(seconds / 60)) + ":" + pad(seconds % 60);
      var warning = seconds > 0 && seconds < 60;
      panel.classList.toggle("countdown--warning", warning);
      panel.classList.toggle("countdown--expired", seconds === 0);
      if (note) {
        var text = seconds === 0 ? "Time is up: your seats are being released."
          : warning ? "Less than a minute left! Pay now to keep your seats."
          : "Your seats are held until the timer runs out.";
        if (note.textContent !== text) { note.textContent = text; }
      }
    });
  }

  function localTimes(root) {
    var format = new Intl.DateTimeFormat(undefined, {
      weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", timeZoneName: "short"
    });
    (root || document).querySelectorAll("time[data-local-time]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) { el.textContent = format.format(when); el.title = el.getAttribute("datetime"); }
    });
  }

  // A re-rendered seat map keeps the reader's place in a cabin scrolled sideways (a wide-body
  // on a phone). htmx already keeps the focused seat, by its id.
  var cabinScroll = null;
  document.addEventListener("htmx:beforeSwap", function () {
    var cabin = document.querySelector(".cabin-scroll");
    cabinScroll = cabin ? cabin.scrollLeft : null;
  });
  document.addEventListener("htmx:afterSettle", function () {
    var cabin = document.querySelector(".cabin-scroll");
    if (cabin && cabinScroll) { cabin.scrollLeft = cabinScroll; }
  });

  document.addEventListener("DOMContentLoaded", function () { localTimes(); tick(); });
  document.addEventListener("htmx:load", function (event) { localTimes(event.target); tick(); });
  setInterval(tick, 1000);
})();
