// Every console page: the viewer's local time on hover over each UTC time
// (the `utc` template filter's <time datetime>), and each table cell labelled
// with its column's header, which console.css shows when a narrow screen
// stacks a table's rows into cards.
(function () {
  "use strict";

  const LOCAL = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
  });

  // The `utc` template filter's element, for times a script shows.
  function timeElement(date) {
    const el = document.createElement("time");
    el.className = "utc";
    el.dateTime = date.toISOString().replace(/\.\d{3}Z$/, "Z");
    el.textContent = el.dateTime.replace("T", " ").replace("Z", " UTC");
    el.title = "Your local time: " + LOCAL.format(date);
    return el;
  }

  function titleLocalTimes(root) {
    root.querySelectorAll("time.utc[datetime]").forEach(function (el) {
      const when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) el.title = "Your local time: " + LOCAL.format(when);
    });
  }

  // A row's cells with the columns they start at (rowspan and colspan kept).
  function labelCells(table) {
    const head = table.tHead && table.tHead.rows[table.tHead.rows.length - 1];
    if (!head) return;
    const labels = [];
    for (const th of head.cells) {
      for (let i = 0; i < (th.colSpan || 1); i++) labels.push(th.textContent.trim());
    }
    const carried = [];  // column -> rows a rowspan still covers
    for (const body of table.tBodies) {
      for (const row of body.rows) {
        let column = 0;
        for (const cell of row.cells) {
          while (carried[column] > 0) { carried[column]--; column++; }
          if (!cell.hasAttribute("data-label") && labels[column]) cell.setAttribute("data-label", labels[column]);
          if (cell.rowSpan > 1) carried[column] = cell.rowSpan - 1;
          column += cell.colSpan || 1;
        }
        for (let c = column; c < carried.length; c++) if (carried[c] > 0) carried[c]--;
      }
    }
  }

  function enhance(root) {
    titleLocalTimes(root);
    root.querySelectorAll("main table.table").forEach(labelCells);
  }

  window.livecenterConsole = {enhance: enhance, timeElement: timeElement};
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { enhance(document); });
  } else {
    enhance(document);
  }
})();
