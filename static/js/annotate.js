// Keyboard flow for the judging page. The keys are apps/judging/keys.py's, read through keys.js:
// pairwise 1/← left, 2/→ right, 3 tie, 4 both bad; graded 1-7 from "left significantly better"
// to "right significantly better", b both bad; r writes the rationale, c goes to the first
// unanswered criterion (arrows pick within it).
// A key press submits the form through the matching button, so htmx (or, without htmx, the
// browser) sends exactly what a click would. Time on task counts only while the page is visible.
(function () {
  "use strict";
  var keys = window.annotateKeys;
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

  // Skipping: s goes to the skip form's first button; there a reason's key (its digit, o for
  // Other, Enter when the project has no reasons) skips at once, and Esc goes back. Other needs
  // a note: o goes to the note, and Enter in it skips for Other.
  function skipKey(event) {
    var skipForm = event.target && event.target.closest && event.target.closest("form.skip");
    if (!skipForm) return false;
    if (event.target.id === "skip-note") {
      if (event.key !== "Enter") return false;
      var other = skipForm.querySelector('button[value="other"], button[data-skip-key="Enter"]');
      if (other && !other.disabled) {
        event.preventDefault();
        other.click();
      }
      return true;
    }
    if (keys.isTyping(event)) return false;
    if (event.key === "Escape") {
      event.preventDefault();
      var title = document.getElementById("comparison-title");
      if (title) title.focus({ preventScroll: true });
      return true;
    }
    if (keys.action(event.key) === "skip_other") {
      var note = skipForm.querySelector("#skip-note");
      if (note && skipForm.querySelector('button[value="other"]')) {
        event.preventDefault();
        note.focus();
        return true;
      }
    }
    var button = null;
    skipForm.querySelectorAll("button[data-skip-key]").forEach(function (candidate) {
      if (candidate.getAttribute("data-skip-key") === event.key) button = candidate;
    });
    if (button) {
      event.preventDefault();
      if (!button.disabled) button.click();
      return true;
    }
    // Letters other than the skip keys still work (u, g, ?); digits and arrows judge nothing here.
    return /^[0-9]$/.test(event.key) || event.key.indexOf("Arrow") === 0;
  }

  function choosing(target) {
    return target && target.tagName === "INPUT" && /^(radio|checkbox)$/.test(target.type);
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
    if (!event.ctrlKey && !event.metaKey && !event.altKey && skipKey(event)) return;
    if (event.key === "Escape" && keys.isTyping(event)) {
      event.target.blur();  // leave the rationale box, back to the choice keys
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || keys.isTyping(event)) return;
    if (event.key.indexOf("Arrow") === 0 && (scrollsSideways(event.target) || choosing(event.target))) return;
    var action = keys.action(event.key);
    if (action === "help" || action === "guidelines") {
      event.preventDefault();
      toggle(action);
      return;
    }
    if (document.querySelector("dialog[open]")) return;  // the help list has the keys now
    if (action === "undo") {
      var undo = document.querySelector("form.undo button");
      if (undo && !undo.disabled) {
        event.preventDefault();
        undo.click();
      }
      return;
    }
    if (action === "skip") {
      var first = document.querySelector("form.skip button[data-skip-key]");
      if (first) {
        event.preventDefault();
        first.focus();
      }
      return;
    }
    var form = document.querySelector("form.judge");
    if (!form) return;
    if (action === "rationale" || action === "criterion") {
      var target = action === "rationale" ? form.querySelector("#rationale") : firstUnanswered(form);
      if (target) {
        event.preventDefault();
        target.focus();
      }
      return;
    }
    var judge = keys.judge(event.key);
    var button = judge && form.querySelector(
      '.choices button[name="' + judge[0] + '"][value="' + judge[1] + '"]'
    );
    if (!button || button.disabled) return;
    event.preventDefault();
    // A click, not form.requestSubmit(button): htmx 2 learns which button submitted from the
    // click, and without it would post no `choice` at all.
    button.click();
  });

  // The help list is a modal <dialog>; the guidelines a side panel that leaves the keys working.
  function toggle(id) {
    var element = document.getElementById(id);
    if (!element) return;
    if (element.tagName === "DIALOG") {
      if (element.open) element.close(); else element.showModal();
      return;
    }
    element.hidden = !element.hidden;
    document.body.classList.toggle("with-" + id, !element.hidden);
    if (!element.hidden) element.focus({ preventScroll: true });
  }

  document.addEventListener("click", function (event) {
    var opener = event.target.closest && event.target.closest("[data-open], [data-close]");
    if (!opener) return;
    toggle(opener.getAttribute("data-open") || opener.getAttribute("data-close"));
  });

  // The first criterion without an answer: its checked radio's group, or its first radio.
  function firstUnanswered(form) {
    var groups = form.querySelectorAll("fieldset.criterion");
    for (var i = 0; i < groups.length; i++) {
      if (!groups[i].querySelector("input:checked")) return groups[i].querySelector("input");
    }
    return groups.length ? groups[0].querySelector("input:checked") : null;
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.classList && form.classList.contains("judge")) {
      var field = form.querySelector('input[name="duration_ms"]');
      if (field) field.value = String(elapsed());
    }
  }, true);

  // A judgment sent when the session has expired comes back as a redirect to the login form.
  // It is kept in sessionStorage as it was sent (its idempotency key included) and sent again,
  // to its own assignment, once the annotator is back on this project's page.
  var PENDING = "annotate:pending-judgment";

  document.addEventListener("htmx:beforeRequest", function (event) {
    var form = event.detail.elt;
    if (!form || !form.classList || !form.classList.contains("judge")) return;
    var fields = {};
    new FormData(form).forEach(function (value, name) {
      if (name === "csrfmiddlewaretoken") return;
      if (name in fields) fields[name] = [].concat(fields[name], value); else fields[name] = value;
    });
    var submitter = event.detail.requestConfig && event.detail.requestConfig.triggeringEvent &&
      event.detail.requestConfig.triggeringEvent.submitter;
    if (submitter && submitter.name) fields[submitter.name] = submitter.value;
    try {
      sessionStorage.setItem(PENDING, JSON.stringify({
        page: location.pathname, action: form.getAttribute("action"), fields: fields
      }));
    } catch (e) { /* storage full or off: nothing is kept, as before */ }
    showPrefetched(form.closest("section#comparison"));
  });

  // The card carries the next comparison, prefetched (a <template>): it is shown the moment
  // the judgment leaves, read-only until the server's answer, which leases it (or, if others
  // took it meanwhile, another one) and replaces it. htmx swaps that answer into the same
  // <section>, so only its children are replaced here.
  function showPrefetched(section) {
    var template = section && section.querySelector("template#prefetched");
    if (!template) return;
    section.replaceChildren(template.content.cloneNode(true));
    section.setAttribute("data-assignment", "prefetched");
    section.setAttribute("aria-busy", "true");
    section.querySelectorAll("button, input, select, textarea").forEach(function (control) {
      control.disabled = true;
    });
    resetTimer();
  }

  function resendPending() {
    var raw = null;
    try { raw = sessionStorage.getItem(PENDING); } catch (e) { return; }
    if (!raw) return;
    sessionStorage.removeItem(PENDING);
    var pending;
    try { pending = JSON.parse(raw); } catch (e) { return; }
    if (!pending || pending.page !== location.pathname || !window.htmx) return;
    inFlight = pending;
    window.htmx.ajax("POST", pending.action, {
      source: document.body, target: "#comparison", swap: "outerHTML", values: pending.fields
    });
  }

  // A judgment that did not reach the server, or that the server could not store (a 503 while
  // the database is away, or no answer at all), is not dropped: the card says so, and the same
  // request, with the same idempotency key so that it is stored once, is sent again after 2 s,
  // then 4, 8, ... up to 30 s, or at once on "Send now".
  var inFlight = null, retryDelay = 0, retryTimer = null;
  var FAILURES = ["htmx:responseError", "htmx:sendError", "htmx:timeout"];

  document.addEventListener("htmx:beforeRequest", function (event) {
    var form = event.detail.elt;
    if (form && form.classList && form.classList.contains("judge")) {
      try { inFlight = JSON.parse(sessionStorage.getItem(PENDING) || "null"); } catch (e) {
        inFlight = null;
      }
      // The prefetched card has replaced the form by now, so htmx's error events, fired on
      // the detached form, never reach the document: listen on the form itself.
      FAILURES.forEach(function (name) { form.addEventListener(name, sendFailed); });
    }
  });

  function sendFailed(event) {
    if (event.annotateSeen) return;  // heard on the form and again on the document
    event.annotateSeen = true;
    var sent = inFlight;
    var path = event.detail.pathInfo && event.detail.pathInfo.requestPath;
    if (!sent || path !== sent.action) return;
    var xhr = event.detail.xhr;
    var status = xhr ? xhr.status : 0;
    if (status && status !== 502 && status !== 503 && status !== 504) return;
    try { sessionStorage.setItem(PENDING, JSON.stringify(sent)); } catch (e) { return; }
    retryDelay = Math.min(retryDelay ? retryDelay * 2 : 2000, 30000);
    var section = document.querySelector("section#comparison");
    if (section) {
      var note = section.querySelector(".send-error");
      if (!note) {
        note = document.createElement("div");
        note.className = "send-error";
        note.setAttribute("role", "alert");
        note.appendChild(document.createElement("p"));
        var button = document.createElement("button");
        button.type = "button";
        button.className = "send-now";
        button.textContent = "Send now";
        button.addEventListener("click", sendAgain);
        note.appendChild(button);
        section.prepend(note);
      }
      note.querySelector("p").textContent = (status
        ? "The server could not store your last judgment (" + status + ")."
        : "Your last judgment did not reach the server.") +
        " It is kept in this browser and sent again in " + Math.round(retryDelay / 1000) +
        " s; nothing is lost or counted twice.";
    }
    clearTimeout(retryTimer);
    retryTimer = setTimeout(sendAgain, retryDelay);
  }

  function sendAgain() {
    clearTimeout(retryTimer);
    retryTimer = null;
    resendPending();
  }

  FAILURES.forEach(function (name) { document.addEventListener(name, sendFailed); });

  document.addEventListener("DOMContentLoaded", function () {
    if (document.querySelector("section#comparison")) resendPending();
  });

  document.addEventListener("htmx:afterSwap", function () {
    try { sessionStorage.removeItem(PENDING); } catch (e) { /* nothing kept */ }
    inFlight = null;
    retryDelay = 0;
    clearTimeout(retryTimer);
    resetTimer();
    // The old comparison, and the focus with it, is gone: start from the new one's heading.
    var title = document.getElementById("comparison-title");
    if (title) title.focus({ preventScroll: true });
  });
})();
