// Time charts and the usage panel, shared by the monitoring pages and the
// Statistics page: one uPlot setup (UTC on the axis, the viewer's local time
// in the hover legend, tick spacing that keeps labels apart), one
// time-range picker, and the usage panel that draws a domain's, app's or
// stream's statistics from the API (/api/v1/monitoring/usage/).
window.LivecenterCharts = (function () {
  "use strict";

  const HEIGHT = 240;
  // Ranges the picker offers, in seconds ("custom" takes two times).
  const RANGES = { "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };

  function utc(ts) {
    return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC");
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  // The hover legend's time: the viewer's own zone, with the UTC beside it.
  function localTime(ts) {
    if (ts == null) return "—";
    const d = new Date(ts * 1000);
    return `${d.toLocaleString()} (${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC)`;
  }

  const PREFIXES = [
    [1e9, "G"],
    [1e6, "M"],
    [1e3, "k"],
  ];

  // 1234567 -> ["1.23", "M"]
  function scaled(v) {
    const a = Math.abs(v);
    for (const [div, prefix] of PREFIXES) {
      if (a >= div) return [String(+(v / div).toFixed(2)), prefix];
    }
    return [String(+v.toFixed(2)), ""];
  }

  // 1234567 -> "1.23M": short y-axis labels that fit the axis's width.
  function compact(v) {
    return v == null ? "" : scaled(v).join("");
  }

  // 1600000, "bit/s" -> "1.6 Mbit/s"
  function withUnit(v, unit) {
    if (v == null) return "—";
    const [number, prefix] = scaled(v);
    return `${number} ${prefix}${unit}`;
  }

  function bitrate(bps) {
    return withUnit(bps, "bit/s");
  }

  function bytes(n) {
    return withUnit(n, "B");
  }

  // A time chart in `el`: series [{label, stroke, ...}], data [[times], [values]...],
  // `format` turns a value into the legend's text; `yLabel` names the unit.
  function timeChart(el, series, data, format, yLabel) {
    const opts = {
      width: chartWidth(el),
      height: HEIGHT,
      tzDate: utc,
      // One point (a stream's last sample) gets a minute either side (uPlot
      // would give it 1,000 days when times are in seconds).
      scales: { x: { time: true, range: (u, min, max) => (u.data[0].length === 1 ? [min - 60, min + 60] : [min, max]) } },
      series: [{ value: (u, ts) => localTime(ts) }, ...series.map((s) => ({ ...s, value: (u, v) => format(v) }))],
      axes: [
        // At least 90 px between time ticks: "12:00" and "12/5" labels never touch.
        { space: 90, label: "UTC", labelSize: 18, labelFont: "12px sans-serif" },
        { space: 30, size: 56, values: (u, splits) => splits.map(compact), label: yLabel, labelSize: yLabel ? 18 : 0 },
      ],
    };
    const plot = new uPlot(opts, data, el);
    // The chart follows its box, not the window: the box also changes width
    // with no resize event (a column reflowing, a scrollbar, a hidden card
    // shown). Until it has (the next rendering), .monitor-chart clips it.
    new ResizeObserver(() => {
      const width = chartWidth(el);
      if (width !== plot.width) plot.setSize({ width, height: HEIGHT });
    }).observe(el);
    return plot;
  }

  // As wide as its box; a box not shown yet (hidden: 0 wide) gets a
  // stand-in until it is.
  function chartWidth(el) {
    return el.clientWidth || 300;
  }

  // --- the time-range picker ------------------------------------------------------

  function localInput(date) {
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
  }

  // The picker in `root` (a select [data-range] and two datetime-local inputs
  // [data-start] [data-end], shown for "custom", in the viewer's local time).
  // `onChange({start, end})` gets Date objects, or {error}.
  function rangePicker(root, onChange) {
    const select = root.querySelector("[data-range]");
    const start = root.querySelector("[data-start]");
    const end = root.querySelector("[data-end]");
    const custom = root.querySelector("[data-custom]");
    function current() {
      if (select.value !== "custom") {
        const now = new Date();
        return { start: new Date(now - RANGES[select.value] * 1000), end: now };
      }
      const from = new Date(start.value);
      const to = new Date(end.value);
      if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime())) return { error: "Enter a start and an end time." };
      if (from >= to) return { error: "The end time must be after the start time." };
      return { start: from, end: to };
    }
    function changed() {
      custom.hidden = select.value !== "custom";
      if (select.value === "custom" && !start.value) {
        const now = new Date();
        start.value = localInput(new Date(now - 86400 * 1000));
        end.value = localInput(now);
      }
      onChange(current());
    }
    select.addEventListener("change", changed);
    start.addEventListener("change", changed);
    end.addEventListener("change", changed);
    custom.hidden = select.value !== "custom";
    return { current, refresh: () => onChange(current()) };
  }

  // --- the usage panel ------------------------------------------------------------

  const INTERVAL_NAMES = { 60: "a minute", 300: "5 minutes", 3600: "an hour", 86400: "a day" };

  function usagePanel(root) {
    const find = (name) => root.querySelector(`[data-usage="${name}"]`);
    const scope = { domain: root.dataset.domain, app: root.dataset.app || "", stream: root.dataset.stream || "" };
    const bandwidthData = [[], [], [], []];
    const viewerData = [[], [], [], []];
    const bandwidthChart = timeChart(
      find("bandwidth-chart"),
      [
        { label: "Out (average)", stroke: "#0d6efd", width: 2 },
        { label: "Out (peak second)", stroke: "#6ea8fe", dash: [4, 4] },
        { label: "In (average)", stroke: "#198754" },
      ],
      bandwidthData,
      bitrate,
      "bit/s",
    );
    const viewerChart = timeChart(
      find("viewers-chart"),
      [
        { label: "Peak viewers", stroke: "#dc3545", width: 2 },
        { label: "Average viewers", stroke: "#fd7e14" },
        { label: "Unique viewers", stroke: "#6f42c1" },
      ],
      viewerData,
      (v) => (v == null ? "—" : String(+v.toFixed(1))),
      "viewers",
    );
    const state = { requests: 0, loaded: 0 };
    root.usage = state;

    function show(body) {
      const times = body.data.map((p) => Date.parse(p.time_stamp) / 1000);
      bandwidthData.splice(0, 4, times, ...["average_bps_out", "peak_bps_out", "average_bps_in"].map((k) => body.data.map((p) => p[k])));
      viewerData.splice(0, 4, times, ...["peak_viewers", "average_viewers", "unique_viewers"].map((k) => body.data.map((p) => p[k])));
      bandwidthChart.setData(bandwidthData);
      viewerChart.setData(viewerData);
      const s = body.summary;
      const cells = {
        "bytes-in": bytes(s.bytes_in),
        "bytes-out": bytes(s.bytes_out),
        "by-protocol": Object.entries(s.bytes_out_by_protocol).map(([p, n]) => `${p.toUpperCase()} ${bytes(n)}`).join(", ") || "—",
        "peak-in": bitrate(s.peak_bps_in),
        "peak-out": bitrate(s.peak_bps_out),
        "p95-in": bitrate(s.p95_bps_in),
        "p95-out": bitrate(s.p95_bps_out),
        "peak-viewers": String(s.peak_viewers),
        "unique-viewers": String(s.unique_viewers),
      };
      for (const [name, text] of Object.entries(cells)) {
        const el = find(name);
        if (el) el.textContent = text;
      }
      find("interval").textContent = `One point every ${INTERVAL_NAMES[body.interval] || `${body.interval} s`}, from ${body.start_time} to ${body.end_time} (UTC).`;
      root.dataset.points = String(body.data.length);
    }

    function load(range) {
      const error = find("error");
      error.hidden = true;
      if (range.error) {
        error.textContent = range.error;
        error.hidden = false;
        return;
      }
      const params = new URLSearchParams({ ...scope, start_time: range.start.toISOString(), end_time: range.end.toISOString() });
      const csv = find("csv");
      if (csv) csv.href = `${root.dataset.usageApi}csv/?${params}`;
      const request = ++state.requests;
      fetch(`${root.dataset.usageApi}?${params}`, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then((r) => r.json().then((body) => ({ ok: r.ok, body })))
        .then(({ ok, body }) => {
          if (request !== state.requests) return; // a newer range was asked for
          if (!ok) {
            error.textContent = Object.entries(body).map(([field, messages]) => `${field}: ${[].concat(messages).join(" ")}`).join("; ");
            error.hidden = false;
            return;
          }
          show(body);
          state.loaded = request;
        })
        .catch((exc) => {
          error.textContent = `Could not load the statistics: ${exc}`;
          error.hidden = false;
        });
    }

    const picker = rangePicker(root, load);
    picker.refresh();
    // The open period fills in as the worker rolls it up.
    setInterval(() => {
      if (root.querySelector("[data-range]").value !== "custom") picker.refresh();
    }, 60000);
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-usage-api]").forEach(usagePanel);
  });

  return { timeChart, rangePicker, bitrate, localTime, compact };
})();
