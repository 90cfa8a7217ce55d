// Keyboard flow for the judging page: 1/← left, 2/→ right, 3 tie, 4 both bad.
// A key press submits the form through the matching button, so htmx (or, without htmx, the
// browser) sends exactly what a click would. Time on task counts only while the page is visible.
(function () {
  "use strict";
  var KEYS = { "1": "left", ArrowLeft: "left", "2": "right", ArrowRight: "right", "3": "tie", "4": "both_bad" };
  var visibleMs = 0;
  var visibleSince = document.visibilityState === "visible" ? performance.now() : null;

  function resetTimer() {
    visibleMs = 0;
    visibleSince = document.visibilityState === "visible" ? performance.now() : null;
  }
  function elapsed() {
    return Math.round(visibleMs + (visibleSince === null ? 0 : performance.now() - visibleSince));
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") {
      visibleSince = performance.now();
    } else if (visibleSince !== null) {
      visibleMs += performance.now() - visibleSince;
      visibleSince = null;
    }
  });

  function typing(target) {
    return target && (target.tagName === "TEXTAREA" || target.tagName === "INPUT" || target.isContentEditable);
  }

  // Left and right scroll a focused pane or code block that is wider than its box; there, the
  // arrow keys scroll. Everywhere else they judge.
  function scrollsSideways(target) {
    for (var el = target; el && el !== document.body; el = el.parentElement) {
      if (el.matches && el.matches(".candidate, .prompt, pre") && el.scrollWidth > el.clientWidth) {
        return true;
      }
    }
    return false;
  }

  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && typing(event.target)) {
      event.target.blur();  // leave the rationale box, back to the choice keys
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    if (event.key.indexOf("Arrow") === 0 && scrollsSideways(event.target)) return;
    var choice = KEYS[event.key];
    if (!choice) return;
    var form = document.querySelector("form.judge");
    var button = form && form.querySelector('button[data-choice="' + choice + '"]');
    if (!button || button.disabled) return;
    event.preventDefault();
    // A click, not form.requestSubmit(button): htmx 2 learns which button submitted from the
    // click, and without it would post no `choice` at all.
    button.click();
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.classList && form.classList.contains("judge")) {
      var field = form.querySelector('input[name="duration_ms"]');
      if (field) field.value = String(elapsed());
    }
  }, true);

  document.addEventListener("htmx:afterSwap", function () {
    resetTimer();
    // The old comparison, and the focus with it, is gone: start from the new one's heading.
    var title = document.getElementById("comparison-title");
    if (title) title.focus({ preventScroll: true });
  });
})();
