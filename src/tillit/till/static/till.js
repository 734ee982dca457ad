// Keyboard first: a barcode scanner types into the focused field and presses Enter.
(function () {
  function focus(id) { var el = document.getElementById(id); if (el) { el.focus(); el.select && el.select(); } }
  document.addEventListener("keydown", function (e) {
    if (e.key === "F2") { e.preventDefault(); focus("cash-tendered"); }
    else if (e.key === "F4") { e.preventDefault(); focus("pay-code"); }
    else if (e.key === "F8") { e.preventDefault(); var b = document.getElementById("new-sale"); if (b) b.click(); else focus("scan"); }
    else if (e.key === "Escape") { focus("scan"); }
    else if (e.key === "/" && document.activeElement && document.activeElement.tagName !== "INPUT") { e.preventDefault(); focus("scan"); }
  });
  // After every swap, give the scanner its field back unless the cashier is typing elsewhere.
  document.body.addEventListener("htmx:afterSwap", function () {
    var active = document.activeElement;
    if (!active || active === document.body) { focus("scan") || focus("shift-float"); }
  });
})();
