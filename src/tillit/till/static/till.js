// Touch, keyboard and scanner. A barcode scanner types into the focused field and presses Enter; the
// scan box keeps focus unless the cashier is typing elsewhere, so a scan never needs a click.
(function () {
  function $(id) { return document.getElementById(id); }
  function focus(id) { var el = $(id); if (el && !el.disabled) { el.focus(); if (el.select) el.select(); return true; } return false; }
  function click(id) { var el = $(id); if (el && !el.disabled) { el.click(); return true; } return false; }
  var activeCat = "";

  // Category tabs and search-as-you-type filter the grid in the browser: no request, no delay.
  function filterGrid() {
    var scan = $("scan"), q = scan ? scan.value.trim().toLowerCase() : "", shown = 0;
    document.querySelectorAll("#grid .tile").forEach(function (tile) {
      var inCat = activeCat === "" || (activeCat === "*fav" ? tile.dataset.fav === "1" : tile.dataset.cat === activeCat);
      var ok = inCat && (q === "" || tile.dataset.search.indexOf(q) !== -1);
      tile.hidden = !ok; if (ok) shown++;
    });
    var empty = $("grid-empty"); if (empty) empty.hidden = shown > 0;
  }
  document.addEventListener("click", function (e) {
    var tab = e.target.closest("#tabs .tab");
    if (tab) {
      activeCat = tab.dataset.cat;
      document.querySelectorAll("#tabs .tab").forEach(function (b) {
        var on = b === tab; b.classList.toggle("active", on); b.setAttribute("aria-selected", on ? "true" : "false");
      });
      filterGrid(); return;
    }
    var mode = e.target.closest("#numpad-form .mode");
    if (mode) {
      $("numpad-mode").value = mode.dataset.mode;
      document.querySelectorAll("#numpad-form .mode").forEach(function (b) {
        var on = b === mode; b.classList.toggle("active", on); b.setAttribute("aria-pressed", on ? "true" : "false");
      });
      return;
    }
    var key = e.target.closest("#numpad-form .key[data-key]");
    if (key) {
      var v = $("numpad-value"), k = key.dataset.key;
      if (k === "back") v.value = v.value.slice(0, -1);
      else if (k === "clear") v.value = "";
      else v.value += k;
    }
  });
  document.addEventListener("input", function (e) { if (e.target.id === "scan") filterGrid(); });

  document.addEventListener("keydown", function (e) {
    var tag = document.activeElement ? document.activeElement.tagName : "";
    if (e.key === "F2") { e.preventDefault(); focus("cash-tendered"); }
    // F4: ask the customer for the code (the display says "scan to pay"; the swap then puts the focus in
    // the code field); offline or while a payment is in flight the button is off, so just focus the field.
    else if (e.key === "F4") { e.preventDefault(); click("ask-code") || focus("pay-code"); }
    else if (e.key === "F6") { e.preventDefault(); click("hold"); }
    else if (e.key === "F7") { e.preventDefault(); click("held-toggle"); }
    else if (e.key === "F8") { e.preventDefault(); if (!click("new-sale")) focus("scan"); }
    else if (e.key === "F9") { e.preventDefault(); focus("numpad-value"); }
    else if (e.key === "Escape") { focus("scan"); }
    else if (e.key === "/" && tag !== "INPUT" && tag !== "SELECT") { e.preventDefault(); focus("scan"); }
  });

  // After every swap, give the scanner its field back unless the cashier is typing elsewhere. While
  // the customer is asked for a payment code, the code field takes the scanner's input instead.
  document.body.addEventListener("htmx:afterSettle", function (e) {
    if (e.detail && e.detail.target && e.detail.target.id === "status-bar") return;
    var app = $("app");
    if (app && app.dataset.askingCode === "1" && focus("pay-code")) return;
    if ($("manager-pin") && focus("manager-pin")) return;
    var active = document.activeElement;
    if (!active || active === document.body || !document.body.contains(active)) { focus("scan") || focus("shift-float"); }
    filterGrid();
  });
})();
