// Reading aids for the judging page: the Left and Right panes can scroll together, and `d` shows
// or hides the word diff. The card is replaced after every judgment, so every listener sits on
// the document and looks the card up when it fires; the remembered choice is set again after
// each htmx swap.
(function () {
  "use strict";
  var STORE_KEY = "annotate.scrollTogether";
  var echo = null;  // the scroll this script caused in the other pane: not to be echoed back

  document.documentElement.classList.add("has-js");  // shows the controls that need a script

  function remembered() {
    try {
      return window.localStorage.getItem(STORE_KEY) === "1";
    } catch (error) {
      return false;  // storage refused (private mode, policy): the choice lasts this page only
    }
  }
  function remember(on) {
    try {
      window.localStorage.setItem(STORE_KEY, on ? "1" : "0");
    } catch (error) { /* as above */ }
  }

  function scrollTogether() {
    var box = document.getElementById("scroll-together");
    return box !== null && box.checked;
  }

  function otherPane(pane) {
    var panes = document.querySelectorAll(".candidates > .candidate");
    if (panes.length !== 2) return null;
    if (pane === panes[0]) return panes[1];
    if (pane === panes[1]) return panes[0];
    return null;
  }

  // Brings `follower` to the same relative position as `leader`: the same share of the way down.
  function follow(leader, follower) {
    var range = leader.scrollHeight - leader.clientHeight;
    var ratio = range > 0 ? leader.scrollTop / range : 0;
    var top = Math.round(ratio * (follower.scrollHeight - follower.clientHeight));
    if (Math.abs(follower.scrollTop - top) < 1) return;
    follower.scrollTop = top;
    echo = { pane: follower, top: follower.scrollTop };
  }

  function restore() {
    var box = document.getElementById("scroll-together");
    if (box) box.checked = remembered();
  }

  // Scroll events do not bubble; a listener that captures sees every pane's, old or new.
  document.addEventListener("scroll", function (event) {
    var pane = event.target;
    if (!scrollTogether() || !pane.matches || !pane.matches(".candidate")) return;
    if (echo !== null && echo.pane === pane) {
      var ours = Math.abs(pane.scrollTop - echo.top) < 2;
      echo = null;
      if (ours) return;
    }
    var other = otherPane(pane);
    if (other) follow(pane, other);
  }, true);

  document.addEventListener("change", function (event) {
    var box = event.target;
    if (box.id !== "scroll-together" && box.id !== "show-diff") return;
    if (box.id === "scroll-together") {
      remember(box.checked);
      var panes = document.querySelectorAll(".candidates > .candidate");
      if (box.checked && panes.length === 2) follow(panes[0], panes[1]);
    }
    // After a click, hand the keys back to the page: annotate.js ignores keys typed into an
    // input, and 1, 2, ← and → should judge again at once. A keyboard user keeps the focus.
    if (!box.matches(":focus-visible")) box.blur();
  });

  document.addEventListener("keydown", function (event) {
    var keys = window.annotateKeys;
    if (keys.action(event.key) !== "diff" || event.repeat) return;
    if (event.ctrlKey || event.metaKey || event.altKey || keys.isTyping(event)) return;
    var box = document.getElementById("show-diff");
    if (!box) return;
    event.preventDefault();
    box.checked = !box.checked;
    box.dispatchEvent(new Event("change", { bubbles: true }));
  });

  document.addEventListener("htmx:afterSwap", restore);
  restore();
})();
