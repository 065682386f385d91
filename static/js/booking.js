// What the browser does itself: tick the seat-hold countdown every second, show departure
// times in the viewer's time zone, keep a sideways-scrolled cabin in place when htmx
// re-renders it, and make the seat map one keyboard grid. Polling and forms are htmx's job.
(function () {
  "use strict";

  // Without EventSource (an old browser, a script that removed it) no stream is opened: the
  // page polls, as it always does. (This runs before htmx processes the page.)
  if (!("EventSource" in window)) {
    document.querySelectorAll("[sse-connect]").forEach(function (el) { el.removeAttribute("sse-connect"); });
  }

  // Pushed changes. The element that opens a stream ([data-pushes-to]: the id of the live
  // fragment it refreshes) also listens to its events: no swap replaces it, so no event is lost
  // while htmx swaps a new copy of the fragment in. Each event asks the fragment for a fresh copy
  // (the "pushed" trigger), one fetch at a time: an event that comes while a fetch of it is under
  // way (pushed or polled), or while the copy it brought is not live yet (htmx makes a new copy
  // live after its 20 ms settle, and a trigger before that goes nowhere), asks for one more fetch
  // once the new copy is live. So the last change is always fetched, and a burst of events costs
  // two fetches, not one each (a fetch cancelled in the browser still costs the server the page).
  var pushes = {}; // by fragment id: {busy, settling, again}

  function pushTarget(id) {
    if (!pushes[id] && id && document.querySelector("[data-pushes-to='" + id + "']")) {
      pushes[id] = { busy: false, settling: false, again: false };
    }
    return pushes[id];
  }

  function fetchPushed(id) {
    var state = pushTarget(id), fragment = document.getElementById(id);
    // A final fragment (the order ended, the flight departed) has no fetch of its own any more.
    if (!state || !fragment || !fragment.hasAttribute("hx-get")) { return; }
    if (state.busy || state.settling) { state.again = true; return; }
    state.again = false;
    htmx.trigger(fragment, "pushed");
  }

  document.addEventListener("htmx:sseMessage", function (event) {
    var id = event.target.dataset && event.target.dataset.pushesTo;
    if (id) { fetchPushed(id); }
  });

  // The element that made the request: once the fragment is swapped out, htmx tells
  // htmx:afterRequest from the nearest element still in the page (as detail.elt).
  function requester(event) { return (event.detail.requestConfig || {}).elt || event.detail.elt; }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = requester(event), state = pushTarget(elt.id);
    if (state && elt.hasAttribute("hx-get")) { state.busy = true; }
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var elt = requester(event), state = pushes[elt.id];
    if (!state || !state.busy || !elt.hasAttribute("hx-get")) { return; }
    state.busy = false;
    // Swapped: wait for the new copy to be live (htmx:load). Not swapped (204, an error): go on.
    state.settling = document.getElementById(elt.id) !== elt;
    if (state.again) { fetchPushed(elt.id); }
  });
  document.addEventListener("htmx:load", function (event) {
    var state = pushes[event.target.id];
    if (!state) { return; }
    state.settling = false;
    if (state.again) { fetchPushed(event.target.id); }
  });

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

  // The seat map as a WAI-ARIA grid: one tab stop (roving tabindex), arrow keys between seats
  // (across aisles, skipping seats that cannot be clicked), Home/End in a row, Ctrl+Home/End.
  var activeSeat = null; // the id of the seat that holds the tab stop, kept across re-renders

  function enabledSeats(root) {
    return Array.prototype.filter.call(root.querySelectorAll("button.seat"), function (b) { return !b.disabled; });
  }

  function rove(grid) {
    var seats = enabledSeats(grid);
    var current = seats.filter(function (b) { return b === document.activeElement || b.id === activeSeat; })[0]
      || grid.querySelector("button.seat--selected:not(:disabled)") || seats[0];
    grid.querySelectorAll("button.seat").forEach(function (b) { b.tabIndex = b === current ? 0 : -1; });
  }

  function moveTo(seat) {
    if (!seat) { return; }
    var grid = seat.closest("[data-seat-grid]");
    grid.querySelectorAll("button.seat[tabindex='0']").forEach(function (b) { b.tabIndex = -1; });
    seat.tabIndex = 0;
    activeSeat = seat.id;
    seat.focus();
    seat.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  function target(grid, seat, key, ctrl) {
    var rows = Array.prototype.map.call(grid.querySelectorAll("[role=row]"), enabledSeats)
      .filter(function (row) { return row.length; });
    var r = rows.findIndex(function (row) { return row.indexOf(seat) >= 0; });
    var row = rows[r], c = row.indexOf(seat), letter = seat.value.slice(-1);
    if (key === "ArrowLeft") { return row[c - 1]; }
    if (key === "ArrowRight") { return row[c + 1]; }
    if (key === "Home") { return ctrl ? rows[0][0] : row[0]; }
    if (key === "End") { return ctrl ? rows[rows.length - 1].slice(-1)[0] : row[row.length - 1]; }
    var step = key === "ArrowUp" || key === "PageUp" ? -1 : 1, jump = key.indexOf("Page") === 0 ? 5 : 1;
    // Up and down keep the column where the next row has that seat free, else its nearest seat.
    for (var i = r + step * jump; i >= 0 && i < rows.length; i += step) {
      var same = rows[i].filter(function (b) { return b.value.slice(-1) === letter; })[0];
      if (same) { return same; }
      if (jump > 1 || i === rows.length - 1 || i === 0) { return rows[i][Math.min(c, rows[i].length - 1)]; }
    }
    return null;
  }

  document.addEventListener("keydown", function (event) {
    var seat = event.target.closest && event.target.closest("[data-seat-grid] button.seat");
    var keys = ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End", "PageUp", "PageDown"];
    if (!seat || keys.indexOf(event.key) < 0 || event.altKey || event.metaKey) { return; }
    event.preventDefault();
    moveTo(target(seat.closest("[data-seat-grid]"), seat, event.key, event.ctrlKey));
  });
  document.addEventListener("focusin", function (event) {
    if (event.target.matches && event.target.matches("[data-seat-grid] button.seat")) { moveTo(event.target); }
  });

  // A message about a seat is shown beside it; the announcer (a live region outside the swapped
  // fragments) reads it out.
  function announce() {
    var announcer = document.getElementById("announcer");
    var message = document.querySelector("[data-seat-message]");
    if (announcer) { announcer.textContent = message ? message.textContent.trim() : ""; }
  }

  // The skip link lands in the payment field itself, not just beside it.
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a[href='#payment-code']");
    var field = document.getElementById("payment-code");
    if (!link || !field) { return; }
    event.preventDefault();
    field.focus();
  });

  // The order's page shows the customer's seats (row 30 of a wide-body is far down) as soon as
  // it has them: at once, or once the poll brings the first confirmed hold.
  var shownMine = !!location.hash;

  function showMine() {
    var mine = document.querySelector("#seat-panel button.seat--selected, #seat-panel button.seat--mine");
    if (mine && !shownMine) {
      shownMine = true;
      mine.scrollIntoView({ block: "center", inline: "center" });
    }
  }

  // "Copy link": the private link to a booking, to the clipboard (selected, if it cannot be).
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    var field = button && document.getElementById(button.dataset.copy);
    if (!field) { return; }
    field.select();
    var done = function () { button.textContent = "Copied"; document.getElementById("announcer").textContent = "Link copied"; };
    if (navigator.clipboard) { navigator.clipboard.writeText(field.value).then(done, function () {}); }
    else if (document.execCommand("copy")) { done(); }
  });

  function setUp(root) {
    localTimes(root);
    tick();
    (root.matches && root.matches("[data-seat-grid]") ? [root] : root.querySelectorAll("[data-seat-grid]")).forEach(rove);
    showMine();
  }

  document.addEventListener("DOMContentLoaded", function () { setUp(document); });
  document.addEventListener("htmx:load", function (event) { setUp(event.target); });
  document.addEventListener("htmx:afterSettle", announce);
  setInterval(tick, 1000);
})();
