// The monitoring pages: live charts of one stream, and a domain's overview.
// Both are fed by a WebSocket (monitoring/consumers.py), no polling; the
// server sends what it has on opening, then each sample as the nodes report it.
(function () {
  "use strict";

  // Ten minutes of one-second samples on a chart.
  const MAX_POINTS = 600;
  // A stream on the overview with no news for this long is taken as gone.
  const STALE_MS = 15000;
  const RECENTLY_STOPPED_MS = 3600000; // services.RECENTLY_STOPPED

  function $(id) {
    return document.getElementById(id);
  }

  function kbps(bitsPerSecond) {
    return `${Math.round((bitsPerSecond || 0) / 1000).toLocaleString("en")} kbit/s`;
  }

  function sum(values) {
    return Object.values(values || {}).reduce((a, b) => a + b, 0);
  }

  // A WebSocket that reconnects (with backoff) until the server refuses it.
  function listen(path, onMessage, stateEl) {
    let delay = 1000;
    function open() {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      const ws = new WebSocket(scheme + location.host + path);
      ws.onopen = () => {
        stateEl.textContent = "connected";
        delay = 1000;
      };
      ws.onmessage = (event) => onMessage(JSON.parse(event.data));
      ws.onclose = (event) => {
        if (event.code === 4401 || event.code === 4403) {
          stateEl.textContent = "not allowed";
          return;
        }
        stateEl.textContent = "reconnecting…";
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 10000);
      };
    }
    open();
  }

  // The shared time chart (charts.js): UTC on the axis, local time on hover.
  function chart(el, series, data, unit) {
    return LivecenterCharts.timeChart(el, series, data, (v) => (v == null ? "—" : `${v} ${unit}`), unit);
  }

  // --- one stream ---------------------------------------------------------------

  function streamPage(root) {
    const state = {
      samples: 0,
      live: root.dataset.live === "true",
      session: root.dataset.session || "",
      stoppedSession: "",
      last: 0,
      lastSample: null,
    };
    window.livecenterMonitor = state;
    const bitrate = [[], [], [], []]; // time, total, video, audio (kbit/s)
    const fps = [[], [], []]; // time, video, audio
    const bitrateChart = chart(
      $("bitrate-chart"),
      [
        { label: "Total", stroke: "#0d6efd", width: 2 },
        { label: "Video", stroke: "#198754" },
        { label: "Audio", stroke: "#fd7e14" },
      ],
      bitrate,
      "kbit/s",
    );
    const fpsChart = chart(
      $("framerate-chart"),
      [
        { label: "Video", stroke: "#198754", width: 2 },
        { label: "Audio", stroke: "#fd7e14" },
      ],
      fps,
      "fps",
    );

    // The SRT link (a stream that came in over SRT): RTT, and packets lost,
    // retransmitted and dropped per second. Drawn once its first sample comes.
    const srtRtt = [[], [], []]; // time, RTT, RTT variation (ms)
    const srtLoss = [[], [], [], [], []]; // time, received, lost, retransmitted, dropped (per second)
    let srtRttChart = null;
    let srtLossChart = null;

    function srtCharts() {
      if (srtRttChart) return;
      $("srt-charts").hidden = false;
      $("srt-panel").hidden = false;
      srtRttChart = chart(
        $("srt-rtt-chart"),
        [
          { label: "RTT", stroke: "#0d6efd", width: 2 },
          { label: "Variation", stroke: "#6c757d" },
        ],
        srtRtt,
        "ms",
      );
      srtLossChart = chart(
        $("srt-loss-chart"),
        [
          { label: "Received", stroke: "#198754", show: false },
          { label: "Lost", stroke: "#fd7e14", width: 2 },
          { label: "Retransmitted", stroke: "#0d6efd" },
          { label: "Dropped", stroke: "#dc3545", width: 2 },
        ],
        srtLoss,
        "packets/s",
      );
    }

    function srtDetails(link) {
      $("srt-peer").textContent = link.peer;
      $("srt-encrypted").textContent = link.encrypted ? "yes" : "no";
      $("srt-latency").textContent = `${link.latency_ms} ms`;
      $("srt-rtt").textContent = `${link.rtt_ms.toFixed(1)} ms (±${link.rtt_var_ms.toFixed(1)})`;
      $("srt-buffer").textContent = `${link.receive_buffer_packets} packets, ${link.receive_buffer_ms} ms`;
      $("srt-lost").textContent = link.packets_lost_per_second.toFixed(1);
      $("srt-retransmitted").textContent = link.packets_retransmitted_per_second.toFixed(1);
      $("srt-dropped").textContent = link.packets_dropped_per_second.toFixed(1);
      $("srt-totals").textContent =
        `${link.packets_received} received, ${link.packets_lost} lost, ` +
        `${link.packets_retransmitted} retransmitted, ${link.packets_dropped} dropped`;
    }

    function redrawSrt() {
      if (!srtRttChart) return;
      srtRttChart.setData(srtRtt);
      srtLossChart.setData(srtLoss);
    }

    // The WebRTC link (a stream that came in over WHIP): RTT and jitter, and
    // packets lost and asked for again (NACK) per second. Drawn once its first sample comes.
    const whipRtt = [[], [], []]; // time, RTT, jitter (ms)
    const whipLoss = [[], [], [], []]; // time, received, lost, NACKed (per second)
    let whipRttChart = null;
    let whipLossChart = null;

    function whipCharts() {
      if (whipRttChart) return;
      $("whip-charts").hidden = false;
      $("whip-panel").hidden = false;
      whipRttChart = chart(
        $("whip-rtt-chart"),
        [
          { label: "RTT", stroke: "#0d6efd", width: 2 },
          { label: "Jitter", stroke: "#6c757d" },
        ],
        whipRtt,
        "ms",
      );
      whipLossChart = chart(
        $("whip-loss-chart"),
        [
          { label: "Received", stroke: "#198754", show: false },
          { label: "Lost", stroke: "#dc3545", width: 2 },
          { label: "NACKed", stroke: "#fd7e14" },
        ],
        whipLoss,
        "packets/s",
      );
    }

    function whipDetails(link) {
      $("whip-peer").textContent = link.peer;
      $("whip-state").textContent = link.connection_state;
      $("whip-codecs").textContent = [link.video_codec, link.audio_codec].filter(Boolean).join(", ") || "—";
      $("whip-rtt").textContent = link.rtt_ms ? `${link.rtt_ms.toFixed(1)} ms` : "not measured yet";
      $("whip-jitter").textContent = `${link.jitter_ms.toFixed(1)} ms`;
      $("whip-lost").textContent = link.packets_lost_per_second.toFixed(1);
      $("whip-nacks").textContent = link.nacks_sent_per_second.toFixed(1);
      $("whip-keyframes").textContent = String(link.keyframe_requests);
      $("whip-totals").textContent =
        `${link.packets_received} received, ${link.packets_lost} lost, ` +
        `${link.nacks_sent} NACKed, ${link.frames_lost} frames lost`;
    }

    function redrawWhip() {
      if (!whipRttChart) return;
      whipRttChart.setData(whipRtt);
      whipLossChart.setData(whipLoss);
    }

    function setLive(live, reason) {
      state.live = live;
      const badge = $("stream-state");
      badge.textContent = live ? "live" : `stream stopped${reason ? ` (${reason})` : ""}`;
      badge.className = `badge ${live ? "text-bg-success" : "text-bg-secondary"}`;
      root.dataset.live = String(live);
      lastSeen();
    }

    // A stopped stream's figures are its last ones, said so with when they
    // were seen; not shown as current.
    function lastSeen() {
      const note = $("last-seen");
      const stale = !state.live && state.lastSample != null;
      note.hidden = !stale;
      for (const id of ["media-details", "viewers-table", "srt-details", "whip-details"]) {
        $(id).classList.toggle("text-muted", stale);
      }
      if (stale) {
        const when = $("last-seen-time");
        when.textContent = LivecenterCharts.localTime(state.lastSample.at);
        when.dateTime = new Date(state.lastSample.at * 1000).toISOString();
      }
    }

    function push(series, values) {
      values.forEach((v, i) => series[i].push(v));
      if (series[0].length > MAX_POINTS) series.forEach((s) => s.shift());
    }

    function details(s) {
      $("detail-video").textContent = s.video_codec ? `${s.video_codec} ${s.video_profile}`.trim() : "—";
      $("detail-resolution").textContent = s.width ? `${s.width}×${s.height}` : "—";
      $("detail-fps").textContent = `${s.video_frame_rate.toFixed(2)} fps`;
      $("detail-video-bitrate").textContent = kbps(s.video_bitrate);
      $("detail-keyframes").textContent = s.keyframe_interval_ms ? `${(s.keyframe_interval_ms / 1000).toFixed(2)} s` : "—";
      $("detail-bframes").textContent = s.bframes ? "yes" : "no";
      $("detail-jumps").textContent = String(s.timestamp_jumps);
      $("detail-audio").textContent = s.audio_codec
        ? `${s.audio_codec} ${s.audio_sample_rate} Hz, ${s.audio_channels} ch, ${s.audio_frame_rate.toFixed(1)} frames/s`
        : "—";
      $("detail-audio-bitrate").textContent = kbps(s.audio_bitrate);
      const { viewers: allViewers, out: allOut } = everyNode(s.at);
      const body = $("viewers-table").tBodies[0];
      body.replaceChildren();
      const protocols = new Set([...Object.keys(allViewers), ...Object.keys(allOut)]);
      for (const protocol of [...protocols].sort()) {
        const row = body.insertRow();
        row.dataset.protocol = protocol;
        row.insertCell().textContent = protocol.toUpperCase();
        const viewers = row.insertCell();
        viewers.className = "text-end";
        viewers.textContent = String(allViewers[protocol] || 0);
        const out = row.insertCell();
        out.className = "text-end";
        out.textContent = kbps(allOut[protocol]);
      }
      $("viewers-total").textContent = String(sum(allViewers));
      $("out-total").textContent = kbps(sum(allOut));
    }

    // In a cluster every node carrying the stream samples it: the charts
    // and details are the publisher's node's (no upstream_node), the
    // viewers those of every node, each node's latest sample added up.
    const nodes = new Map(); // node_id -> its latest sample
    function everyNode(at) {
      const viewers = {};
      const out = {};
      for (const n of nodes.values()) {
        if (n.at < at - STALE_MS / 1000) continue; // that node no longer carries it
        for (const [p, v] of Object.entries(n.viewers)) viewers[p] = (viewers[p] || 0) + v;
        for (const [p, v] of Object.entries(n.bitrate_out)) out[p] = (out[p] || 0) + v;
      }
      return { viewers, out };
    }

    function add(s, redraw) {
      nodes.set(s.node_id || "", s);
      if (s.upstream_node) {
        if (redraw && state.lastSample) details(state.lastSample);
        return;
      }
      if (s.at <= state.last) return; // already drawn (the opening history overlaps the live feed)
      if (state.last && s.session_id !== state.session) {
        // A new publication: break the lines between the two.
        const gap = (state.last + s.at) / 2;
        push(bitrate, [gap, null, null, null]);
        push(fps, [gap, null, null]);
        if (srtRttChart) {
          push(srtRtt, [gap, null, null]);
          push(srtLoss, [gap, null, null, null, null]);
        }
        if (whipRttChart) {
          push(whipRtt, [gap, null, null]);
          push(whipLoss, [gap, null, null, null]);
        }
      }
      state.session = s.session_id;
      state.last = s.at;
      state.lastSample = s;
      push(bitrate, [s.at, Math.round(s.bitrate / 1000), Math.round(s.video_bitrate / 1000), Math.round(s.audio_bitrate / 1000)]);
      push(fps, [s.at, s.video_frame_rate, s.audio_frame_rate]);
      const link = s.srt;
      if (link) {
        srtCharts();
        push(srtRtt, [s.at, link.rtt_ms, link.rtt_var_ms]);
        push(srtLoss, [
          s.at,
          link.packets_received_per_second,
          link.packets_lost_per_second,
          link.packets_retransmitted_per_second,
          link.packets_dropped_per_second,
        ]);
        $("srt-rtt-chart").dataset.points = String(srtRtt[0].filter((_, i) => srtRtt[1][i] != null).length);
        $("srt-loss-chart").dataset.points = $("srt-rtt-chart").dataset.points;
        if (redraw) srtDetails(link);
      }
      const whip = s.whip;
      if (whip) {
        whipCharts();
        // 0 until the first STUN check is answered: no point rather than a false 0 ms.
        push(whipRtt, [s.at, whip.rtt_ms || null, whip.jitter_ms]);
        push(whipLoss, [
          s.at,
          whip.packets_received_per_second,
          whip.packets_lost_per_second,
          whip.nacks_sent_per_second,
        ]);
        $("whip-rtt-chart").dataset.points = String(whipRtt[0].filter((_, i) => whipRtt[2][i] != null).length);
        $("whip-loss-chart").dataset.points = $("whip-rtt-chart").dataset.points;
        if (redraw) whipDetails(whip);
      }
      state.samples += 1;
      $("bitrate-chart").dataset.points = String(bitrate[0].filter((_, i) => bitrate[1][i] != null).length);
      $("framerate-chart").dataset.points = String(fps[0].filter((_, i) => fps[1][i] != null).length);
      if (redraw) {
        bitrateChart.setData(bitrate);
        fpsChart.setData(fps);
        redrawSrt();
        redrawWhip();
        details(s);
      }
      if (!state.live && s.session_id !== state.stoppedSession) setLive(true);
    }

    function onMessage(message) {
      if (message.type === "history") {
        message.samples.forEach((s) => add(s, false));
        bitrateChart.setData(bitrate);
        fpsChart.setData(fps);
        redrawSrt();
        redrawWhip();
        if (state.lastSample) details(state.lastSample);
        if (state.lastSample && state.lastSample.srt) srtDetails(state.lastSample.srt);
        if (state.lastSample && state.lastSample.whip) whipDetails(state.lastSample.whip);
        if (message.live) setLive(true);
        else {
          if (state.lastSample) state.stoppedSession = state.lastSample.session_id;
          setLive(false);
        }
      } else if (message.type === "sample") {
        add(message.sample, true);
      } else if (message.type === "state") {
        if (message.live) {
          state.stoppedSession = "";
          setLive(true);
        } else {
          state.stoppedSession = message.session_id;
          setLive(false, message.reason);
        }
      }
    }

    const history = JSON.parse($("stream-history").textContent);
    // A stopped stream's samples on opening are its last, not a new publication.
    if (!state.live && history.length) state.stoppedSession = history[history.length - 1].session_id;
    history.forEach((s) => add(s, false));
    lastSeen();
    bitrateChart.setData(bitrate);
    fpsChart.setData(fps);
    redrawSrt();
    redrawWhip();
    if (state.lastSample) details(state.lastSample);
    if (state.lastSample && state.lastSample.srt) srtDetails(state.lastSample.srt);
    if (state.lastSample && state.lastSample.whip) whipDetails(state.lastSample.whip);
    listen(root.dataset.ws, onMessage, $("socket-state"));
  }

  // --- a domain -------------------------------------------------------------------

  function domainPage(root) {
    // stream_url -> {seen, nodes: node_id -> {sample, seen}, stopped}: in a
    // cluster every node carrying a stream samples it; its figures are the
    // publisher's node's, its viewers and egress every node's added up. A
    // stream that stopped keeps its last figures, greyed, for
    // RECENTLY_STOPPED_MS (services.RECENTLY_STOPPED): `stopped` is
    // {at, reason, session} then.
    const streams = new Map();
    window.livecenterDomainMonitor = streams;
    const streamPage = root.dataset.streamPage;

    function render() {
      const now = Date.now();
      for (const [url, entry] of streams) {
        if (entry.stopped) {
          if (now - entry.stopped.at * 1000 > RECENTLY_STOPPED_MS) streams.delete(url);
          continue;
        }
        for (const [node, n] of entry.nodes) if (now - n.seen > STALE_MS) entry.nodes.delete(node);
        if (now - entry.seen > STALE_MS) streams.delete(url);
      }
      const body = $("domain-streams").tBodies[0];
      body.replaceChildren();
      let bitIn = 0;
      let bitOut = 0;
      let users = 0;
      let live = 0;
      // Live ones first, by name; then the stopped ones, the latest stopped first.
      const urls = [...streams.keys()].sort();
      const stoppedAt = (url) => streams.get(url).stopped.at;
      const order = [
        ...urls.filter((url) => !streams.get(url).stopped),
        ...urls.filter((url) => streams.get(url).stopped).sort((a, b) => stoppedAt(b) - stoppedAt(a)),
      ];
      for (const url of order) {
        const stopped = streams.get(url).stopped;
        const samples = [...streams.get(url).nodes.values()].map((n) => n.sample);
        const s = samples.find((n) => !n.upstream_node) || samples[0];
        const viewers = samples.reduce((total, n) => total + sum(n.viewers), 0);
        const out = samples.reduce((total, n) => total + sum(n.bitrate_out), 0);
        const [domain, app, ...rest] = url.split("/");
        const row = body.insertRow();
        row.dataset.stream = url;
        const link = document.createElement("a");
        link.href = `${streamPage}?${new URLSearchParams({ domain, app, stream: rest.join("/") })}`;
        link.textContent = url;
        link.className = "font-monospace";
        const name = row.insertCell();
        name.append(link);
        if (stopped) {
          // Its last figures, not current ones: said so, with when they were seen.
          row.dataset.state = "stopped";
          row.classList.add("text-muted");
          const note = document.createElement("div");
          note.className = "small";
          const when = document.createElement("time");
          const lastAt = s ? s.at : stopped.at;
          when.dateTime = new Date(lastAt * 1000).toISOString();
          when.textContent = LivecenterCharts.localTime(lastAt);
          note.append(`stopped${stopped.reason ? ` (${stopped.reason})` : ""}, last seen `, when);
          name.append(note);
        }
        const cells = s
          ? [
              s.width ? `${s.video_codec} ${s.width}×${s.height}` : s.video_codec || "—",
              `${s.video_frame_rate.toFixed(1)} fps`,
              kbps(s.bitrate),
              String(viewers),
              kbps(out),
            ]
          : ["—", "—", "—", "0", "—"];
        cells.forEach((text, i) => {
          const cell = row.insertCell();
          cell.textContent = text;
          if (i > 0) cell.className = "text-end";
        });
        if (stopped) continue;
        live += 1;
        if (s) {
          bitIn += s.bitrate;
          bitOut += out;
          users += viewers;
        }
      }
      $("total-streams").textContent = String(live);
      $("total-in").textContent = kbps(bitIn);
      $("total-out").textContent = kbps(bitOut);
      $("total-users").textContent = String(users);
      $("no-streams").hidden = live > 0;
    }

    function put(url, s, now) {
      const entry = streams.get(url) || { nodes: new Map() };
      // A stopped session's last samples may trail its stop; another session's mean it is live again.
      if (entry.stopped && s && s.session_id === entry.stopped.session) return;
      entry.stopped = null;
      entry.seen = now;
      if (s) {
        // A node's own sample takes the place of the opening's, all nodes' (no node_id).
        if (s.node_id) entry.nodes.delete("");
        entry.nodes.set(s.node_id || "", { sample: s, seen: now });
      }
      streams.set(url, entry);
    }

    function putStopped(url, sample, stopped) {
      const entry = streams.get(url) || { nodes: new Map() };
      if (sample) entry.nodes = new Map([[sample.node_id || "", { sample: sample, seen: Date.now() }]]);
      entry.stopped = stopped;
      streams.set(url, entry);
    }

    function onMessage(message) {
      const now = Date.now();
      if (message.type === "snapshot") {
        streams.clear();
        for (const s of message.streams) put(s.stream_url, s.sample, now);
        for (const s of message.stopped || []) {
          putStopped(s.stream_url, s.sample, { at: s.stopped_at, reason: s.reason, session: s.session_id });
        }
      } else if (message.type === "samples") {
        for (const s of message.samples) put(s.stream_url, s, now);
      } else if (message.type === "state") {
        if (message.live) put(message.stream_url, null, now);
        else {
          const stopped = { at: message.at, reason: message.reason, session: message.session_id };
          putStopped(message.stream_url, null, stopped);
        }
      }
      render();
    }

    for (const s of JSON.parse($("domain-latest").textContent)) put(s.stream_url, s, Date.now());
    for (const s of JSON.parse($("domain-stopped").textContent)) {
      putStopped(s.stream_url, s.sample, { at: s.stopped_at, reason: s.reason, session: s.session_id });
    }
    render();
    setInterval(render, 5000);
    listen(root.dataset.ws, onMessage, $("socket-state"));
  }

  document.addEventListener("DOMContentLoaded", () => {
    const stream = $("stream-monitor");
    if (stream) streamPage(stream);
    const domain = $("domain-monitor");
    if (domain) domainPage(domain);
  });
})();
