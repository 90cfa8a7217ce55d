// Listwise ranking: drag the responses into order, or give each a place with its select (the
// keyboard way, which also works without this script). Dragging numbers the places 1..n in the
// new order; Enter on a place submits the ranking.
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
    var after = event.clientY > box.top + box.height / 2;
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
})();
