// Listwise ranking: drag the responses into order, or give each a place with its select (the
// keyboard way, which also works without this script). Dragging numbers the places 1..n in the
// new order; Enter on a place submits the ranking.
// By keyboard: the first place box has the focus as soon as a comparison is shown, and its
// response is marked; a digit gives the marked response that place and marks the next response
// without one; Backspace clears a place. A ranking with a place missing is not sent: the bar
// says which, and the first missing place gets the focus.
(function () {
  "use strict";
  var dragged = null;

  function list(element) {
    return element && element.closest ? element.closest(".rank-list") : null;
  }

  function renumber(rankList) {
    var items = rankList.querySelectorAll(".rank-item");
    for (var i = 0; i < items.length; i++) {
      var select = items[i].querySelector("select");
      if (select) select.value = String(i + 1);
    }
  }

  document.addEventListener("dragstart", function (event) {
    var item = event.target.closest && event.target.closest(".rank-item");
    if (!item) return;
    dragged = item;
    item.classList.add("dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", item.getAttribute("data-position") || "");
  });

  document.addEventListener("dragover", function (event) {
    var over = event.target.closest && event.target.closest(".rank-item");
    if (!dragged || !over || list(over) !== list(dragged)) return;
    event.preventDefault();
    if (over === dragged) return;
    var box = over.getBoundingClientRect();
    // The places sit in a row (wrapping) in the bar: left of the middle goes before.
    var row = getComputedStyle(over.parentNode).display === "flex";
    var after = row ? event.clientX > box.left + box.width / 2 : event.clientY > box.top + box.height / 2;
    over.parentNode.insertBefore(dragged, after ? over.nextSibling : over);
  });

  document.addEventListener("drop", function (event) {
    if (!dragged) return;
    event.preventDefault();
  });

  document.addEventListener("dragend", function () {
    if (!dragged) return;
    dragged.classList.remove("dragging");
    var rankList = list(dragged);
    dragged = null;
    if (rankList) renumber(rankList);
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (!target || target.tagName !== "SELECT" || !list(target)) return;
    var button = target.form && target.form.querySelector('button[data-key="Enter"]');
    if (!button || button.disabled) return;
    event.preventDefault();
    button.click();
  });

  function places() {
    var form = document.querySelector("form.judge");
    return form ? Array.prototype.slice.call(form.querySelectorAll(".rank-list select")) : [];
  }

  function control(target) {
    return !target || target.isContentEditable ||
      /^(INPUT|TEXTAREA|SELECT|BUTTON|SUMMARY|A)$/.test(target.tagName);
  }

  // Digits give places: on a place box, to its response; elsewhere on the page (not in a form
  // control, the skip form or a dialog), to the first response without a place.
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var boxes = places();
    if (!boxes.length || document.querySelector("dialog[open]")) return;
    var target = event.target;
    var onPlace = target && target.tagName === "SELECT" && list(target);
    if (!onPlace && (control(target) || (target.closest && target.closest("form.skip, aside")))) return;
    var box = onPlace ? target : boxes.filter(function (b) { return !b.value; })[0] || boxes[0];
    if (box.disabled) return;
    if ((event.key === "Backspace" || event.key === "Delete") && onPlace) {
      event.preventDefault();
      box.value = "";
      box.dispatchEvent(new Event("change", { bubbles: true }));
      return;
    }
    if (!/^[1-9]$/.test(event.key) || Number(event.key) > boxes.length) return;
    event.preventDefault();
    box.value = event.key;
    box.dispatchEvent(new Event("change", { bubbles: true }));
    var at = boxes.indexOf(box);
    var rest = boxes.slice(at + 1).concat(boxes.slice(0, at));
    var next = rest.filter(function (b) { return !b.value; })[0];
    (next || box).focus({ preventScroll: true });
    if (!next) hideError(box.form);
  });

  // The marked response: its place box has the focus; its pane is outlined and brought into
  // sight (it may be below the others on a narrow screen).
  document.addEventListener("focusin", function (event) {
    var target = event.target;
    document.querySelectorAll(".candidate.ranking-now").forEach(function (pane) {
      pane.classList.remove("ranking-now");
    });
    if (!target || target.tagName !== "SELECT" || !list(target)) return;
    var item = target.closest(".rank-item");
    var position = item && Number(item.getAttribute("data-position"));
    var pane = position && target.form.querySelectorAll(".candidates.listwise .candidate")[position - 1];
    if (!pane) return;
    pane.classList.add("ranking-now");
    var bar = target.closest(".rank-bar");
    var box = pane.getBoundingClientRect();
    var bottom = bar ? bar.getBoundingClientRect().top : window.innerHeight;
    // Not on arrival: a new comparison starts with the page at its top, the question in sight.
    if (!arriving && (box.top < 0 || box.top > bottom - 48)) {
      window.scrollBy({ top: box.top - Math.min(96, bottom / 4), behavior: "instant" });
    }
  });

  function hideError(form) {
    var note = form && form.querySelector(".rank-error");
    if (note) { note.hidden = true; note.textContent = ""; }
  }

  // Before the browser's own check (whose bubble the sticky bar would hide): the missing
  // places, or equal places where ties are off, said in the bar itself.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest('.rank-bar button[type="submit"]');
    if (!button) return;
    var boxes = places();
    var missing = boxes.filter(function (b) { return !b.value; });
    var problem = null, focus = null;
    if (missing.length) {
      problem = "Give every response a place: " + missing.map(name).join(", ") +
        (missing.length === 1 ? " has none." : " have none.");
      focus = missing[0];
    } else if (button.form.querySelector('.ranking[data-ties="no"]')) {
      var seen = {};
      boxes.forEach(function (b) {
        if (focus) return;
        if (seen[b.value]) {
          problem = "Ties are off in this project: " + name(seen[b.value]) + " and " + name(b) +
            " both have place " + b.value + ".";
          focus = b;
        }
        seen[b.value] = b;
      });
    }
    if (!problem) { hideError(button.form); return; }
    event.preventDefault();
    event.stopPropagation();
    var note = button.form.querySelector(".rank-error");
    note.textContent = problem;
    note.hidden = false;
    focus.focus({ preventScroll: true });
  }, true);

  function name(box) {
    var label = box.form.querySelector('label[for="' + box.id + '"]');
    return label ? label.textContent.trim() : box.id;
  }

  // A new comparison: its first place box takes the digits at once (without scrolling: the bar
  // is always in sight).
  var arriving = false;
  function focusFirstPlace() {
    var first = places()[0];
    if (first && !first.disabled && !document.querySelector("dialog[open]")) {
      arriving = true;
      try {
        first.focus({ preventScroll: true });
      } finally {
        arriving = false;
      }
    }
  }
  document.addEventListener("DOMContentLoaded", focusFirstPlace);
  document.addEventListener("htmx:afterSwap", focusFirstPlace);
})();
