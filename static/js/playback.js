// The monitoring pages' playback-quality panel (templates/monitoring/_playback.html):
// what viewers' players reported in their beacons over the last hour, from
// the monitoring API's playback-quality/ (monitoring/playback.py says what
// each figure is), refreshed every REFRESH_MS.
(function () {
  "use strict";

  const REFRESH_MS = 15000;
  const panel = document.getElementById("playback-panel");
  if (!panel) return;
  const el = (id) => document.getElementById(id);

  const percent = (ratio) => (ratio === null || ratio === undefined ? "—" : (ratio * 100).toFixed(2) + " %");
  const ms = (value) => (value === null || value === undefined ? "—" : "≤ " + value + " ms");
  const pairs = (counts) =>
    Object.entries(counts || {})
      .map(([name, count]) => name.replace(">", " → ") + ": " + count)
      .join(", ") || "none";

  function cell(text, end) {
    const td = document.createElement("td");
    td.textContent = text;
    if (end) td.className = "text-end";
    return td;
  }

  function fillTable(table, groups) {
    const body = table.querySelector("tbody");
    body.replaceChildren();
    Object.entries(groups).forEach(([name, f]) => {
      const tr = document.createElement("tr");
      tr.dataset.name = name;
      tr.append(
        cell(name),
        cell(String(f.sessions), true),
        cell(percent(f.stall_ratio), true),
        cell(ms(f.ttff_ms.p50), true),
        cell(pairs(f.fallbacks), true),
      );
      body.append(tr);
    });
  }

  // A bar per bucket, as wide as its share of the first frames.
  function fillHistogram(container, ttff) {
    container.replaceChildren();
    const most = Math.max(1, ...ttff.buckets.map((b) => b.count));
    ttff.buckets.forEach((bucket, index) => {
      const previous = index ? ttff.buckets[index - 1].le : 0;
      const row = document.createElement("div");
      row.className = "d-flex align-items-center gap-2 small";
      const label = document.createElement("span");
      label.className = "text-muted text-nowrap";
      label.style.width = "8em";
      label.textContent = bucket.le === null ? "> " + previous + " ms" : previous + "–" + bucket.le + " ms";
      const bar = document.createElement("div");
      bar.className = "bg-primary";
      bar.style.height = "0.7em";
      bar.style.width = (bucket.count / most) * 70 + "%";
      const count = document.createElement("span");
      count.textContent = bucket.count;
      row.append(label, bar, count);
      container.append(row);
    });
  }

  function render(data) {
    const t = data.total;
    const empty = t.sessions === 0 && t.ttff_ms.count === 0 && t.watch_seconds === 0;
    el("playback-empty").hidden = !empty;
    el("playback-figures").hidden = empty;
    el("playback-updated").replaceChildren("updated ", window.livecenterConsole.timeElement(new Date()));
    if (empty) return;
    el("playback-sessions").textContent = t.sessions + " (" + t.watch_seconds + " s watched)";
    el("playback-stall-ratio").textContent = percent(t.stall_ratio);
    el("playback-stalls").textContent = t.stalls + " (" + t.stall_seconds + " s)";
    el("playback-ttff").textContent =
      "p50 " + ms(t.ttff_ms.p50) + ", p90 " + ms(t.ttff_ms.p90) + ", p99 " + ms(t.ttff_ms.p99) +
      " (" + t.ttff_ms.count + ")";
    el("playback-latency").textContent = t.latency_p50_ms === null ? "not measured" : ms(t.latency_p50_ms);
    el("playback-fallbacks").textContent = pairs(t.fallbacks);
    el("playback-errors").textContent = pairs(t.errors);
    fillHistogram(el("playback-ttff-histogram"), t.ttff_ms);
    fillTable(el("playback-by-protocol"), data.by_protocol);
    fillTable(el("playback-by-region"), data.by_region);
  }

  async function refresh() {
    try {
      const response = await fetch(panel.dataset.url, { credentials: "same-origin", cache: "no-store" });
      if (response.ok) render(await response.json());
    } catch (err) {
      // The next refresh tries again.
    }
  }

  refresh();
  setInterval(refresh, REFRESH_MS);
})();
