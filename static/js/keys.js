// The judging page's keys. They are defined once, in apps/judging/keys.py, and reach the page
// as JSON in an attribute (<div id="judging-keys" data-keys="...">: the page has no inline
// script at all): annotate.js, panes.js and arrival.js read them here instead of naming keys.
// And the one answer to "is the user typing?", which every key handler asks before acting.
(function () {
  "use strict";
  var table = null;

  function bindings() {
    if (table === null) {
      var data = document.getElementById("judging-keys");
      try {
        table = data ? JSON.parse(data.getAttribute("data-keys")) : null;
      } catch (e) {
        table = null;
      }
      table = table || { judge: {}, page: {} };
    }
    return table;
  }

  // True when the key goes into a text field: a text input, a textarea, an editable element,
  // or a select (but a listwise place box, whose digits ranking.js reads as places). Radios,
  // checkboxes and buttons take no text: the page's keys work there.
  function isTyping(event) {
    var target = event && event.target;
    if (!target || !target.tagName) return false;
    if (target.tagName === "INPUT") return !/^(radio|checkbox|button|submit|reset)$/.test(target.type);
    if (target.tagName === "SELECT") return !target.closest(".rank-list");
    return target.tagName === "TEXTAREA" || target.isContentEditable;
  }

  window.annotateKeys = {
    isTyping: isTyping,
    // The page action a key stands for ("help", "undo", ...), or undefined.
    action: function (key) { return bindings().page[key]; },
    // The key of a page action, as shown to the annotator.
    keyFor: function (action) {
      var page = bindings().page;
      for (var key in page) {
        if (page[key] === action) return key;
      }
      return undefined;
    },
    // The judging button a key presses: [its field, its value], or undefined.
    judge: function (key) { return bindings().judge[key]; }
  };
})();
