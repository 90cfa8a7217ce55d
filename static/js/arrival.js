// How a comparison appears on the judging page, and how its controls are shown (issue 15).
// - Every comparison (the first, the prefetched one shown at once, the server's after a swap)
//   starts with the page and each pane at the top, and the prompt box scrolled so that the
//   conversation's last user turn, the request being answered, is in sight; earlier turns sit
//   above it, and a note at the top of the box says so.
// - Nothing focused hides behind the sticky button bar: the page keeps its height as scroll
//   padding, and a focused control of the form is brought wholly into view.
// - A required criterion or rationale left empty is not left to the browser's bubble (drawn
//   behind the bar): it is shown, focused and named by a message of our own, and the bar says
//   how many criteria are still to answer.
// Only classes and CSSOM custom properties are set here: the page's CSP forbids inline styles.
(function () {
  "use strict";

  function section() {
    return document.querySelector("section#comparison");
  }

  // The bar's height (it wraps to more rows on a narrow screen) as the page's scroll padding.
  function measureBar() {
    var bar = document.querySelector("#comparison form.judge .choices");
    var height = bar ? Math.ceil(bar.getBoundingClientRect().height) : 0;
    document.documentElement.style.setProperty("--bar-height", height + "px");
  }

  // The last user turn at the top of the prompt box, below the "earlier turns" note.
  function showQuestion(prompt) {
    var users = prompt.querySelectorAll(":scope > .message.user");
    var last = users.length ? users[users.length - 1] : null;
    prompt.scrollTop = 0;
    if (last) {
      var note = parseFloat(getComputedStyle(prompt).getPropertyValue("--prompt-note")) || 0;
      var box = prompt.getBoundingClientRect();
      var offset = last.getBoundingClientRect().top - box.top - prompt.clientTop;
      if (offset + last.offsetHeight > prompt.clientHeight) prompt.scrollTop = offset - note;
    }
    markEarlier(prompt);
  }

  function markEarlier(prompt) {
    prompt.classList.toggle("more-above", prompt.scrollTop > 1);
  }

  // The bar says how many criteria (below, perhaps out of sight) still want an answer.
  function countCriteria() {
    var form = document.querySelector("#comparison form.judge");
    var bar = form && form.querySelector(".choices");
    if (!bar) return;
    var left = 0;
    form.querySelectorAll("fieldset.criterion").forEach(function (criterion) {
      if (!criterion.querySelector("input:checked")) left += 1;
    });
    var note = bar.querySelector(".criteria-left");
    if (!left) {
      if (note) note.remove();
    } else {
      if (!note) {
        note = document.createElement("p");
        note.className = "criteria-left";
        bar.prepend(note);
      }
      note.textContent = "First answer " + left + (left === 1 ? " criterion" : " criteria") +
        " below: " + window.annotateKeys.keyFor("criterion") + " goes to the next one.";
    }
    measureBar();
  }

  function arrive() {
    var card = section();
    if (!card) return;
    window.scrollTo(0, 0);
    card.querySelectorAll(".candidate").forEach(function (pane) {
      pane.scrollTop = 0;
      pane.scrollLeft = 0;
    });
    card.querySelectorAll(".prompt").forEach(showQuestion);
    countCriteria();
  }

  document.addEventListener("scroll", function (event) {
    var box = event.target;
    if (box.matches && box.matches("#comparison .prompt")) markEarlier(box);
  }, true);

  document.addEventListener("DOMContentLoaded", arrive);
  document.addEventListener("htmx:afterSwap", arrive);
  // annotate.js shows the prefetched comparison as the judgment leaves (on this same event,
  // heard first): it arrives then.
  document.addEventListener("htmx:beforeRequest", function () {
    var card = section();
    if (card && card.getAttribute("data-assignment") === "prefetched") arrive();
  });
  window.addEventListener("resize", measureBar);

  // A focused field of the form is shown whole: a criterion with its question, clear of the bar.
  function fieldBox(control) {
    return control.closest("fieldset.criterion, fieldset.flags") || control;
  }

  document.addEventListener("focusin", function (event) {
    var control = event.target;
    if (!control.matches || !control.matches("form.judge input, form.judge textarea, form.judge select")) {
      return;
    }
    // The bar's own controls (a ranking's place boxes) are always in sight: scrolling to them
    // would only move the page away from the comparison's top.
    if (control.closest(".choices")) return;
    fieldBox(control).scrollIntoView({ block: "nearest" });
  });

  // The browser checks required fields when a choice is clicked (or its key pressed); each empty
  // one fires `invalid`. Cancelled, no bubble is drawn; the first is shown here instead.
  var pointed = false;

  document.addEventListener("invalid", function (event) {
    var control = event.target;
    if (!control.matches("form.judge fieldset.criterion input, form.judge #rationale")) return;
    event.preventDefault();
    if (pointed) return;
    pointed = true;
    setTimeout(function () { pointed = false; }, 0);
    point(control);
  }, true);

  function point(control) {
    var box = fieldBox(control);
    var criterion = box.matches("fieldset.criterion") ? box.getAttribute("data-criterion") : null;
    var note = box.querySelector(".missing");
    if (!note) {
      note = document.createElement("p");
      note.className = "missing";
      note.setAttribute("role", "alert");
      note.id = "missing-" + Math.random().toString(36).slice(2);
      if (box === control) box.insertAdjacentElement("afterend", note); else box.appendChild(note);
      control.setAttribute("aria-describedby", note.id);
    }
    note.textContent = criterion
      ? "Answer \u201c" + criterion + "\u201d first: \u2190 \u2192 pick, Space picks the first, then press your choice again."
      : missingText(control);
    box.classList.add("unanswered");
    control.focus({ preventScroll: true });
    box.scrollIntoView({ block: "center" });
  }

  function missingText(control) {
    if (control.id !== "rationale") return control.validationMessage;
    var least = control.minLength > 0 ? ", at least " + control.minLength + " characters" : "";
    return "Write your rationale first" + least + " (Esc leaves the box), then press your choice again.";
  }

  // Answered: the message goes.
  document.addEventListener("input", function (event) {
    var control = event.target;
    if (!control.form || !control.form.classList.contains("judge")) return;
    countCriteria();
    var box = fieldBox(control);
    if (!box.classList.contains("unanswered")) return;
    if (box.matches("fieldset") ? box.querySelector(":invalid") : !control.validity.valid) return;
    box.classList.remove("unanswered");
    var note = box === control ? box.nextElementSibling : box.querySelector(".missing");
    if (note && note.classList.contains("missing")) note.remove();
    [control].concat(Array.from(box.querySelectorAll("[aria-describedby]"))).forEach(function (el) {
      el.removeAttribute("aria-describedby");
    });
  });
})();
