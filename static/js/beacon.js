// Viewer telemetry for the console's web player (issue 19).
//
// player.js tells this file what happens through window.livecenterBeacon.record(type, fields):
//   "start" (a protocol is tried), "first_frame" {ttff_ms}, "error" {kind, message}
//   (the kind one of ERROR_KINDS, which player.js names where it fails),
//   "level" {kbps} (hls.js chose a variant), "latency" {latency_ms} (a frame's
//   glass-to-glass latency, from the calibrator's timecode);
// each with the protocol playing. Stalls and watch time are measured here
// from the video element. Every BEACON_INTERVAL_MS, and when the page is
// hidden (navigator.sendBeacon), the batch goes to the media node as
// `POST /{app}/{stream}.beacon?auth_key=…`: the URL of the protocol playing
// with its suffix changed, so the beacon carries that URL's signature
// (README, "Viewer telemetry beacons", documents the format for other players).
// What was sent is in window.livecenterBeacon for tests.
(function () {
  "use strict";

  const BEACON_VERSION = 1;
  const BEACON_INTERVAL_MS = 10000;
  const MAX_EVENTS = 50; // the node's limit per beacon (beacon.MAX_BEACON_EVENTS)
  const MAX_LATENCY_SAMPLES = 1000; // per interval, for its median
  // The node's bounds (beacon.py).
  const MAX_DURATION_MS = 3600000;
  const MAX_LATENCY_MS = 600000;
  const PROTOCOLS = ["rts", "flv", "llhls", "hls", "native-hls"];
  // The node's error kinds (beacon.ERROR_KINDS); player.js names one where it fails.
  const ERROR_KINDS = ["network", "decode", "denied", "not_live", "timeout", "unsupported", "other"];

  const sourcesElement = document.getElementById("player-sources");
  const video = document.getElementById("player-video");
  if (!sourcesElement || !video) return;
  const config = JSON.parse(sourcesElement.textContent);

  function newSessionId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return btoa(String.fromCharCode.apply(null, bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  const state = {
    session: newSessionId(),
    pending: [], // events not sent yet
    protocol: null, // the attempt's protocol
    reachedFirstFrame: false,
    watchingSince: null, // performance.now() while watching (after the first frame)
    stallSince: null,
    levelSeen: false,
    latency: [], // this interval's samples
    sent: 0, // beacons the node took (204)
    refused: 0,
    lastStatus: null,
  };

  // The URL of the protocol playing (its signature covers the stream),
  // with `.beacon` for its suffix.
  function beaconUrl(protocol) {
    const key = protocol === "native-hls" ? "hls" : protocol;
    const source = config[key] || config.flv || config.llhls || config.hls || config.rts;
    if (!source) return null;
    const url = new URL(source, location.href);
    url.pathname = url.pathname.replace(/(\.(flv|m3u8|whep))?$/, ".beacon");
    return url.href;
  }

  function protocolNow() {
    const player = window.livecenterPlayer;
    const protocol = (player && player.stats.protocol) || state.protocol;
    return PROTOCOLS.includes(protocol) ? protocol : null;
  }

  function push(event) {
    if (!PROTOCOLS.includes(event.protocol)) return;
    state.pending.push(event);
  }

  // Watch time so far goes into the batch (stalls included: stall ratio is stall time over watch time).
  function closeWatch(now) {
    if (state.watchingSince === null) return;
    const protocol = protocolNow();
    let duration = Math.round(now - state.watchingSince);
    state.watchingSince = now;
    while (duration > 0) {
      const part = Math.min(duration, MAX_DURATION_MS);
      push({ type: "watch", protocol: protocol, duration_ms: part });
      duration -= part;
    }
  }

  function closeStall(now) {
    if (state.stallSince === null) return;
    const duration = Math.min(MAX_DURATION_MS, Math.round(now - state.stallSince));
    state.stallSince = null;
    push({ type: "stall", protocol: protocolNow(), duration_ms: duration });
  }

  function stopWatching(now) {
    closeStall(now);
    closeWatch(now);
    state.watchingSince = null;
  }

  function closeLatency() {
    if (!state.latency.length) return;
    const sorted = state.latency.slice().sort((a, b) => a - b);
    state.latency = [];
    push({ type: "latency", protocol: protocolNow(), latency_ms: sorted[Math.floor(sorted.length / 2)] });
  }

  function record(type, fields) {
    const now = performance.now();
    const protocol = fields && fields.protocol;
    if (type === "start") {
      stopWatching(now);
      if (state.protocol && !state.reachedFirstFrame) push({ type: "fallback", protocol: state.protocol, to: protocol });
      state.protocol = protocol;
      state.reachedFirstFrame = false;
      state.levelSeen = false;
      push({ type: "start", protocol: protocol });
    } else if (type === "first_frame") {
      state.reachedFirstFrame = true;
      state.watchingSince = now;
      push({ type: "first_frame", protocol: protocol, ttff_ms: Math.max(0, Math.min(600000, fields.ttff_ms | 0)) });
    } else if (type === "error") {
      stopWatching(now);
      state.reachedFirstFrame = false; // what follows is a fallback
      const kind = ERROR_KINDS.includes(fields.kind) ? fields.kind : "other";
      push({ type: "error", protocol: protocol, kind: kind });
    } else if (type === "level") {
      // The first is hls.js's first choice, not a switch.
      if (state.levelSeen) push({ type: "bitrate_switch", protocol: protocol, to_kbps: Math.max(0, fields.kbps | 0) });
      state.levelSeen = true;
    } else if (type === "latency") {
      const value = fields.latency_ms;
      // A clock behind the calibrator's gives negative figures: not latency.
      if (value >= 0 && value <= MAX_LATENCY_MS && state.latency.length < MAX_LATENCY_SAMPLES) state.latency.push(value);
    }
  }

  function batch() {
    closeWatch(performance.now());
    closeLatency();
    const events = state.pending.splice(0, MAX_EVENTS);
    return events.length ? { v: BEACON_VERSION, session: state.session, events: events } : null;
  }

  function send(useBeacon) {
    const protocol = protocolNow() || state.protocol;
    const url = beaconUrl(protocol);
    if (!url) return;
    let body = batch();
    while (body) {
      const text = JSON.stringify(body);
      if (useBeacon && navigator.sendBeacon) {
        // text/plain: a CORS-safelisted type, so no preflight as the page goes away.
        navigator.sendBeacon(url, new Blob([text], { type: "text/plain" }));
      } else {
        fetch(url, { method: "POST", body: text, headers: { "Content-Type": "text/plain" }, keepalive: true })
          .then((response) => {
            state.lastStatus = response.status;
            if (response.status === 204) state.sent += 1;
            else state.refused += 1;
          })
          .catch(() => {
            state.refused += 1;
          });
      }
      body = state.pending.length ? batch() : null;
    }
  }

  video.addEventListener("waiting", () => {
    // As player.js counts stalls: playback that runs out of media, not a seek.
    const player = window.livecenterPlayer;
    if (state.watchingSince !== null && state.stallSince === null && !video.seeking &&
        (!player || player.stats.state === "playing")) {
      state.stallSince = performance.now();
    }
  });
  video.addEventListener("playing", () => closeStall(performance.now()));

  setInterval(() => send(false), BEACON_INTERVAL_MS);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") send(true);
  });
  window.addEventListener("pagehide", () => send(true));

  window.livecenterBeacon = { record: record, state: state, flush: () => send(false), url: beaconUrl };
})();
