// The console's web player (templates/streams/player.html).
//
// The page gives signed playback URLs in #player-sources (streams/player.py).
// The player walks a ladder of protocols, lowest latency first, and moves to
// the next rung when one fails or shows no picture within
// FIRST_FRAME_TIMEOUT_MS: RTS (WebRTC over WHEP, where the streaming domain
// has RTS on), then HTTP-FLV through mpegts.js, then LL-HLS and HLS through
// hls.js, then the browser's own HLS. ?protocol=rts|flv|llhls|hls keeps to one
// rung.
//
// The node refuses every protocol alike, so a refusal ends the ladder rather
// than walking it: a stream that is not live (404, once the node has waited
// play_wait_seconds for it) is reported at once and asked for again with
// back-off, and starts playing by itself when it goes live; a forbidden
// stream, a bad signature or an expired link (403) is said and not retried.
// Only what one protocol lacks (RTS switched off, B-frames for WebRTC, a
// node at capacity, no picture) moves to the next rung.
//
// When the picture carries the latency calibrator's timecode
// (livecenter/media/timecode.py: a 32x3 grid of black and white blocks at the
// top left, sync marker 0xA5C3, 64-bit epoch milliseconds, CRC-16/CCITT-FALSE)
// the player reads it from every displayed frame and shows glass-to-glass
// latency. Measurements are in window.livecenterPlayer.stats for tests and
// bench/.
(function () {
  "use strict";

  // The engine holds a viewer of a stream that is not live yet for
  // LIVECENTER_PLAY_WAIT_SECONDS (config.play_wait_seconds, 5 s) before
  // answering 404; wait past that.
  const FIRST_FRAME_MARGIN_MS = 3000;
  // A stream that is not live is asked for again after these delays, then
  // every RETRY_MAX_DELAY_MS (each request itself waits play_wait_seconds on
  // the node, which answers the moment the stream goes live).
  const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000];
  const RETRY_MAX_DELAY_MS = 10000;
  const ATTEMPTS_KEPT = 50;
  const STATS_INTERVAL_MS = 500;
  const LATENCY_SAMPLES_KEPT = 1200;

  // The timecode layout (timecode.py).
  const TC_COLUMNS = 32;
  const TC_ROWS = 3;
  const TC_MIN_BLOCK_PX = 16;
  const TC_SYNC_MARKER = 0xa5c3;
  const TC_THRESHOLD_LUMA = 128;

  // The media server's refusal reasons (X-LiveCenter-Error): [in a viewer's
  // words, the error kind the beacon reports (beacon.js ERROR_KINDS)].
  // A service the node cannot give now (capacity, its policy) is "network",
  // as an HTTP 5xx without a reason is (refusalOf).
  const REASONS = {
    "stream is not live": ["The stream is not live.", "not_live"],
    "expired timestamp": ["This link has expired. Reload the page for a fresh one.", "denied"],
    "invalid md5hash": ["Access denied: invalid signature.", "denied"],
    "no auth_key": ["Access denied: the link is not signed.", "denied"],
    "invalid auth_key": ["Access denied: the link's signature is malformed.", "denied"],
    "stream is forbidden": ["This stream has been blocked by its operator.", "denied"],
    "domain is disabled": ["This streaming domain is disabled.", "denied"],
    "non-existent domain": ["The media server does not know this streaming domain.", "denied"],
    "not a streaming domain": ["This domain is not a streaming domain.", "denied"],
    "streaming domain has no ingest domain": ["This streaming domain has no ingest domain to play from.", "denied"],
    "RTS is off for this domain": ["RTS (WebRTC) is switched off for this streaming domain.", "unsupported"],
    "stream has B-frames and HTML5 auto-transcoding is off for this domain": [
      "The stream has B-frames, which browsers' WebRTC cannot play, and HTML5 auto-transcoding is off.",
      "unsupported",
    ],
    "media node at capacity": ["The media server is at capacity.", "network"],
    "policy unavailable": ["The media server cannot check access right now.", "network"],
  };

  // Refusals that concern one protocol only: the next rung may play.
  const RUNG_REASONS = new Set([
    "RTS is off for this domain",
    "stream has B-frames and HTML5 auto-transcoding is off for this domain",
    "media node at capacity",
    "policy unavailable",
  ]);

  const sourcesElement = document.getElementById("player-sources");
  if (!sourcesElement) return;
  const config = JSON.parse(sourcesElement.textContent);
  const FIRST_FRAME_TIMEOUT_MS = Math.max(8000, (config.play_wait_seconds || 5) * 1000 + FIRST_FRAME_MARGIN_MS);
  const video = document.getElementById("player-video");
  const el = (id) => document.getElementById(id);

  const stats = {
    protocol: null, // the rung playing: "rts", "flv", "llhls", "hls", "native-hls"
    state: "starting", // starting, connecting, buffering (a held start, a stall), playing, not live, failed
    width: 0,
    height: 0,
    fps: null,
    bufferSeconds: null,
    bitrateKbps: null,
    currentTime: 0,
    framesPresented: 0,
    stalls: 0, // "waiting" events after the first frame, but for those of a seek
    firstFrameMs: null, // this rung's start to its first displayed frame
    firstFrameSinceLoadMs: null, // page start (performance.now() 0) to the first frame
    timecodeFound: false,
    latencyMs: null, // the last frame's glass-to-glass latency
    latencySamples: [], // the last LATENCY_SAMPLES_KEPT of them
    attempts: [], // {protocol, error} per rung tried (the last ATTEMPTS_KEPT)
    notLive: 0, // answers "not live" since the page loaded
    retryAt: null, // not live: when the stream is asked for again (Date.now() ms)
    rtc: null, // RTS only: getStats() counters (framesDecoded, audioPacketsReceived, ...)
    hlsLevel: null, // an ABR master's variant playing: {index, width, height, bitrate}
    encryption: null, // HLS only: the playlist's EXT-X-KEY method ("AES-128"), null in clear
    levelSwitches: 0,
    error: null,
  };
  window.livecenterPlayer = { stats: stats, config: config };

  // Viewer telemetry (beacon.js, loaded before this file): what happens, with the protocol playing.
  function report(type, fields) {
    if (window.livecenterBeacon) window.livecenterBeacon.record(type, Object.assign({ protocol: stats.protocol }, fields));
  }

  // --- The ladder ---------------------------------------------------------------

  const hasHlsJs = () => typeof Hls !== "undefined" && Hls.isSupported();
  const RUNGS = [
    {
      name: "rts",
      label: "RTS (WebRTC)",
      available: () => RTS_AVAILABLE && Boolean(config.rts),
      start: startRts,
    },
    {
      name: "flv",
      label: "HTTP-FLV",
      available: () => Boolean(config.flv) && typeof mpegts !== "undefined" && mpegts.isSupported(),
      start: startFlv,
    },
    { name: "llhls", label: "LL-HLS", available: () => Boolean(config.llhls) && hasHlsJs(), start: startLlHls },
    { name: "hls", label: "HLS", available: () => Boolean(config.hls) && hasHlsJs(), start: startHls },
    {
      name: "native-hls",
      label: "HLS (native)",
      available: () => Boolean(config.hls) && video.canPlayType("application/vnd.apple.mpegurl") !== "",
      start: startNativeHls,
    },
  ];
  const CHOSEN = {
    auto: ["rts", "flv", "llhls", "hls", "native-hls"],
    rts: ["rts"],
    flv: ["flv"],
    llhls: ["llhls"],
    hls: ["hls", "native-hls"],
  };

  let current = null; // the attempt running: {rung, engine, startedAt, timer, done}
  let ladder = [];
  let frameCallback = null; // requestVideoFrameCallback's handle

  let backoff = 0; // retries since the last picture
  let retryTimer = null;

  function run() {
    retryTimer = null;
    stats.retryAt = null;
    const names = CHOSEN[config.protocol] || CHOSEN.auto;
    ladder = RUNGS.filter((rung) => names.includes(rung.name));
    next();
  }

  // Not live: say so and ask again later; the ladder starts over then.
  function waitForLive(message) {
    const delay = backoff < RETRY_DELAYS_MS.length ? RETRY_DELAYS_MS[backoff] : RETRY_MAX_DELAY_MS;
    backoff += 1;
    stats.notLive += 1;
    stats.state = "not live";
    stats.error = message;
    stats.retryAt = Date.now() + delay;
    ladder = [];
    retryTimer = setTimeout(run, delay);
    render();
  }

  function next() {
    while (ladder.length) {
      const rung = ladder.shift();
      if (rung.available()) {
        attempt(rung);
        return;
      }
      stats.attempts.push({ protocol: rung.name, error: "not available in this browser or for this stream" });
    }
    stats.state = "failed";
    const last = stats.attempts.filter((a) => a.error).pop();
    showError(stats.error || (last && last.error) || "This browser cannot play the stream.");
    render();
  }

  function attempt(rung) {
    const attemptState = { rung: rung, engine: null, startedAt: performance.now(), timer: null, done: false };
    current = attemptState;
    watchFrames();
    stats.protocol = rung.name;
    stats.state = "connecting";
    // Only HLS is encrypted (RTS and FLV never are); the browser's own HLS
    // shows no playlist, so the page's word for it stands.
    stats.encryption = rung.name === "native-hls" ? config.hls_encryption || null : null;
    stats.attempts.push({ protocol: rung.name, error: null });
    if (stats.attempts.length > ATTEMPTS_KEPT) stats.attempts.shift();
    report("start");
    render();
    attemptState.timer = setTimeout(() => {
      fail(attemptState, "timeout", "No picture arrived within " + FIRST_FRAME_TIMEOUT_MS / 1000 + " s.");
    }, FIRST_FRAME_TIMEOUT_MS);
    try {
      attemptState.engine = rung.start(attemptState);
      // The running library (hls.js, mpegts.js) for diagnostics: its own
      // latency figures are read from here by bench/latency.
      window.livecenterPlayer.engine = attemptState.engine;
    } catch (err) {
      fail(attemptState, "unsupported", String(err && err.message ? err.message : err));
      return;
    }
    if (!attemptState.holdPlay) startPlaying();
  }

  function startPlaying() {
    const playing = video.play();
    if (playing && playing.catch) {
      playing.catch(() => {
        // Autoplay refused even muted, or the load was replaced; the first
        // frame timeout decides.
      });
    }
  }

  // A rung failed with an HTTP error: stop the first-frame clock while the
  // reason is fetched. A 404 is the node's "not live" (the player's URLs
  // name no other path), known without asking again, which would wait the
  // play wait once more.
  function failHttp(attemptState, url, status) {
    if (attemptState !== current || attemptState.done) return;
    clearTimeout(attemptState.timer);
    if (status === 404) {
      refused(attemptState, null, 404);
      return;
    }
    explainHttpFailure(url).then((found) => {
      if (found.status) refused(attemptState, found.reason, found.status);
      else fail(attemptState, "network", found.words);
    });
  }

  // The node refused (`reason` its X-LiveCenter-Error, `status` the HTTP
  // status): not live waits, a refusal of the stream ends the ladder, one
  // of this protocol tries the next rung.
  function refused(attemptState, reason, status) {
    let outcome = "next";
    if (status === 404) outcome = "not live";
    else if (status === 403 && !RUNG_REASONS.has(reason)) outcome = "final";
    const refusal = refusalOf(reason, status);
    fail(attemptState, refusal.kind, refusal.words, outcome);
  }

  // A rung failed: say why (in words; `kind` for the beacon), tear it down,
  // and try the next one ("next"), wait for the stream ("not live"), or stop
  // ("final").
  function fail(attemptState, kind, message, outcome) {
    if (attemptState !== current || attemptState.done) return;
    attemptState.done = true;
    clearTimeout(attemptState.timer);
    stats.attempts[stats.attempts.length - 1].error = message;
    stats.error = message;
    report("error", { kind: kind, message: message });
    teardown(attemptState);
    if (outcome === "not live") {
      waitForLive(message);
      return;
    }
    if (outcome === "final") ladder = [];
    next();
  }

  function teardown(attemptState) {
    if (frameCallback !== null) video.cancelVideoFrameCallback(frameCallback);
    frameCallback = null;
    try {
      if (attemptState.engine) attemptState.engine.destroy();
    } catch (err) {
      // A library that failed half-way may fail to tear down too.
    }
    video.removeAttribute("src");
    video.load();
  }

  // The first frame of the running rung: it works, stay on it.
  function firstFrame() {
    const attemptState = current;
    if (!attemptState || attemptState.done || stats.state === "playing") return;
    if (attemptState.played) {
      // A frame after a stall: playing again.
      stats.state = "playing";
      render();
      return;
    }
    if (stats.state !== "buffering") {
      clearTimeout(attemptState.timer);
      stats.error = null;
      stats.firstFrameMs = Math.round(performance.now() - attemptState.startedAt);
      stats.firstFrameSinceLoadMs = Math.round(performance.now());
      backoff = 0;
      report("first_frame", { ttff_ms: stats.firstFrameMs });
      hideError();
    }
    // A held start (plain HLS: playOnceBuffered) shows its first picture and
    // buffers; it is playing from the first frame after its release.
    stats.state = attemptState.holdPlay && !attemptState.released ? "buffering" : "playing";
    attemptState.played = stats.state === "playing";
    render();
  }

  // --- RTS (WebRTC over WHEP, RFC 9725) ---------------------------------------------------
  //
  // RTS goes first in the ladder because it has the lowest latency. The
  // browser offers to receive video and audio, POSTs the offer to config.rts
  // (the signed .whep URL; config.rts is null where the streaming domain has
  // RTS off), and applies the 201's answer; destroy() closes the connection
  // and DELETEs the session's Location. The offer goes without waiting for
  // ICE candidates: the node answers with its own and learns the browser's
  // from its connectivity checks. getStats() feeds the readout (bitrate, jitter
  // buffer) and stats.rtc, for tests and bench/rts.
  const RTS_AVAILABLE = typeof RTCPeerConnection !== "undefined";
  const RTS_STATS_INTERVAL_MS = 500;

  function startRts(attemptState) {
    const pc = new RTCPeerConnection();
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const remote = new MediaStream();
    pc.addEventListener("track", (event) => {
      remote.addTrack(event.track);
      if (video.srcObject !== remote) video.srcObject = remote;
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed") fail(attemptState, "network", "The WebRTC connection failed (ICE or DTLS).");
    });
    let location = null;
    let closed = false;
    const previous = { at: null, bytes: 0, delay: 0, emitted: 0 };

    async function negotiate() {
      await pc.setLocalDescription(await pc.createOffer());
      const response = await fetch(config.rts, {
        method: "POST",
        headers: { "Content-Type": "application/sdp" },
        body: pc.localDescription.sdp,
        cache: "no-store",
      });
      if (closed) return;
      if (response.status !== 201) {
        let reason = response.headers.get("X-LiveCenter-Error");
        if (!reason) reason = (await response.text()).trim().split("\n")[0] || null;
        refused(attemptState, reason, response.status);
        return;
      }
      const resource = response.headers.get("Location");
      location = resource ? new URL(resource, config.rts).href : null;
      const answer = await response.text();
      if (!closed) await pc.setRemoteDescription({ type: "answer", sdp: answer });
    }

    async function poll() {
      if (closed || attemptState !== current) return;
      const report = await pc.getStats();
      const rtc = {
        framesDecoded: 0,
        videoPacketsReceived: 0,
        audioPacketsReceived: 0,
        packetsLost: 0,
        nackCount: 0,
        pliCount: 0,
        framesDropped: 0,
      };
      let bytes = 0;
      let delay = 0;
      let emitted = 0;
      report.forEach((entry) => {
        if (entry.type !== "inbound-rtp") return;
        bytes += entry.bytesReceived || 0;
        rtc.packetsLost += entry.packetsLost || 0;
        if (entry.kind === "video") {
          rtc.framesDecoded = entry.framesDecoded || 0;
          rtc.videoPacketsReceived = entry.packetsReceived || 0;
          rtc.nackCount = entry.nackCount || 0;
          rtc.pliCount = entry.pliCount || 0;
          rtc.framesDropped = entry.framesDropped || 0;
          delay = entry.jitterBufferDelay || 0;
          emitted = entry.jitterBufferEmittedCount || 0;
        } else if (entry.kind === "audio") {
          rtc.audioPacketsReceived = entry.packetsReceived || 0;
        }
      });
      stats.rtc = rtc;
      const now = performance.now();
      if (previous.at !== null && now > previous.at) {
        stats.bitrateKbps = Math.round(((bytes - previous.bytes) * 8) / (now - previous.at));
        if (emitted > previous.emitted) {
          // The video jitter buffer: WebRTC's only buffer, in place of MSE's.
          stats.bufferSeconds = (delay - previous.delay) / (emitted - previous.emitted);
        }
      }
      Object.assign(previous, { at: now, bytes: bytes, delay: delay, emitted: emitted });
    }

    const statsTimer = setInterval(() => poll().catch(() => {}), RTS_STATS_INTERVAL_MS);
    negotiate().catch((err) => {
      if (!closed) fail(attemptState, "network", "RTS could not start: " + (err && err.message ? err.message : err));
    });
    return {
      destroy() {
        closed = true;
        clearInterval(statsTimer);
        pc.close();
        video.srcObject = null;
        if (location) fetch(location, { method: "DELETE" }).catch(() => {});
      },
    };
  }

  // --- HTTP-FLV through mpegts.js -----------------------------------------------------

  function startFlv(attemptState) {
    const player = mpegts.createPlayer(
      { type: "flv", isLive: true, url: config.flv, cors: true },
      {
        enableWorker: false,
        enableStashBuffer: false, // hand data to MSE at once
        stashInitialSize: 128 * 1024,
        lazyLoad: false,
        autoCleanupSourceBuffer: true,
        liveBufferLatencyChasing: true, // seek forward when the buffer grows
        liveBufferLatencyMaxLatency: 0.6,
        liveBufferLatencyMinRemain: 0.2,
      },
    );
    player.on(mpegts.Events.ERROR, (type, detail, info) => {
      if (detail === mpegts.ErrorDetails.NETWORK_STATUS_CODE_INVALID || type === mpegts.ErrorTypes.NETWORK_ERROR) {
        failHttp(attemptState, config.flv, info && info.code);
      } else {
        fail(attemptState, "decode", "The stream could not be decoded (" + detail + ").");
      }
    });
    player.on(mpegts.Events.STATISTICS_INFO, (info) => {
      if (attemptState === current && typeof info.speed === "number") {
        // mpegts.js reports the download speed in KB/s.
        stats.bitrateKbps = Math.round(info.speed * 8);
      }
    });
    player.attachMediaElement(video);
    player.load();
    return player;
  }

  // --- LL-HLS and HLS through hls.js --------------------------------------------------

  function startLlHls(attemptState) {
    return startHlsJs(attemptState, config.llhls, true);
  }

  function startHls(attemptState) {
    attemptState.holdPlay = true;
    const hls = startHlsJs(attemptState, config.hls, false);
    playOnceBuffered(attemptState, hls);
    return hls;
  }

  // Plain HLS starts three target durations behind the live edge (RFC 8216
  // 6.3.3; hls.js's liveSyncDurationCount) to ride out a late segment. A
  // stream's first viewer finds a playlist of one segment (the node packages
  // from the first request on, from the last keyframe), so hls.js starts at
  // its beginning, right at the edge, with under a second of buffer, and the
  // next segment that is a little late is a stall. Hold playback until that
  // much is buffered (or HLS_HOLD_MAX_MS passed): the first viewer then
  // plays as far behind as every later one.
  const HLS_START_TARGET_DURATIONS = 3;
  const HLS_HOLD_MAX_MS = 6000;
  function playOnceBuffered(attemptState, hls) {
    const since = performance.now();
    let target = 0;
    hls.on(Hls.Events.LEVEL_LOADED, (event, data) => {
      if (data.details && data.details.targetduration) target = data.details.targetduration;
    });
    const timer = setInterval(() => {
      if (attemptState !== current || attemptState.done) {
        clearInterval(timer);
        return;
      }
      const ahead = video.buffered.length ? video.buffered.end(video.buffered.length - 1) - video.currentTime : 0;
      // Or as far behind the live edge as hls.js aims (liveSyncDurationCount
      // target durations): where a viewer of a longer playlist starts, so it
      // is released at once, not kept back a segment more.
      const behind = video.buffered.length && hls.targetLatency ? hls.latency >= hls.targetLatency - 0.1 : false;
      if (
        behind ||
        (target && ahead >= HLS_START_TARGET_DURATIONS * target) ||
        performance.now() - since > HLS_HOLD_MAX_MS
      ) {
        clearInterval(timer);
        attemptState.released = true;
        startPlaying();
      }
    }, 100);
    hls.on(Hls.Events.DESTROYING, () => clearInterval(timer));
  }

  const BITRATE_WINDOW_SECONDS = 2;
  function startHlsJs(attemptState, url, lowLatency) {
    // hls.js's defaults otherwise (DESIGN.md's latency targets assume them);
    // ?debug=1 on the page logs its decisions to the console.
    const debug = new URLSearchParams(location.search).get("debug") === "1";
    const hls = new Hls({ debug: debug, lowLatencyMode: lowLatency, liveDurationInfinity: true, enableWorker: true });
    const window_ = { bytes: 0, seconds: 0 };
    hls.on(Hls.Events.LEVEL_LOADED, (event, data) => {
      // Label what is really playing: a playlist without parts is plain HLS.
      if (attemptState === current && lowLatency) {
        stats.protocol = data.details && data.details.partList && data.details.partList.length ? "llhls" : "hls";
      }
      if (attemptState === current) stats.encryption = encryptionOf(data.details);
    });
    // An ABR master playlist (`{stream}_{group}.m3u8`): hls.js picks the variant.
    hls.on(Hls.Events.LEVEL_SWITCHED, (event, data) => {
      const level = hls.levels[data.level];
      if (attemptState !== current || !level) return;
      stats.hlsLevel = { index: data.level, width: level.width, height: level.height, bitrate: level.bitrate };
      stats.levelSwitches += 1;
      report("level", { kbps: Math.round(level.bitrate / 1000) });
    });
    hls.on(Hls.Events.FRAG_LOADED, (event, data) => {
      // The stream's bitrate: the bytes of the media loaded over the media
      // time they hold, not over the wall clock (LL-HLS parts come in bursts
      // while hls.js catches up, then one a part duration). A part's own
      // bytes and duration (data.part), not its segment's.
      const loaded = data.part ? data.part.stats.loaded : data.frag.stats.loaded;
      window_.bytes += loaded || (data.payload && data.payload.byteLength) || 0;
      window_.seconds += (data.part ? data.part.duration : data.frag.duration) || 0;
      if (window_.seconds >= BITRATE_WINDOW_SECONDS && attemptState === current) {
        stats.bitrateKbps = Math.round((window_.bytes * 8) / 1000 / window_.seconds);
        window_.bytes = 0;
        window_.seconds = 0;
      }
    });
    hls.on(Hls.Events.ERROR, (event, data) => {
      if (!data.fatal) return;
      const xhr = data.networkDetails;
      const reason = xhr && xhr.getResponseHeader ? xhr.getResponseHeader("X-LiveCenter-Error") : null;
      const status = (data.response && data.response.code) || (xhr && xhr.status) || 0;
      if (reason) {
        refused(attemptState, reason, xhr.status);
      } else if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
        failHttp(attemptState, url, status);
      } else {
        fail(attemptState, "decode", "The stream could not be decoded (" + data.details + ").");
      }
    });
    if (lowLatency) catchUpToLiveEdge(hls);
    hls.loadSource(url);
    hls.attachMedia(video);
    return hls;
  }

  // The method of the EXT-X-KEY that applies to the playlist's segments
  // (hls.js decrypts AES-128 itself, with the key the playlist names).
  function encryptionOf(details) {
    const fragment = ((details && details.fragments) || []).find((f) => f.encrypted);
    if (!fragment) return null;
    // The playlist's key (levelkeys), not decryptdata, which hls.js fills in as it loads.
    const key = Object.values(fragment.levelkeys || {})[0];
    return (key && key.method) || "encrypted";
  }

  // hls.js plays PART-HOLD-BACK behind the live edge plus whatever its
  // start-up took (loading the parts since the keyframe, transmuxing, the
  // seek), and adjusts its rate only with more than a second buffered, which
  // LL-HLS never has. Play a little faster (5 %, not heard) while more than a
  // part behind the target and more than two parts are buffered, back to 1 at
  // the target or below two parts of buffer: the start-up delay melts away
  // in seconds, and the buffer a late part needs is never spent on it.
  const CATCH_UP_RATE = 1.05;
  const CATCH_UP_ABOVE_SECONDS = 0.2;
  const CATCH_UP_BUFFER_SECONDS = 0.4;
  function catchUpToLiveEdge(hls) {
    const timer = setInterval(() => {
      const target = hls.targetLatency;
      const latency = hls.latency;
      if (!target || !latency || video.paused) return;
      const buffered = video.buffered.length ? video.buffered.end(video.buffered.length - 1) - video.currentTime : 0;
      const behind = latency - target;
      let rate = video.playbackRate;
      if (behind > CATCH_UP_ABOVE_SECONDS && buffered > CATCH_UP_BUFFER_SECONDS) rate = CATCH_UP_RATE;
      else if (behind <= 0.05 || buffered <= CATCH_UP_BUFFER_SECONDS) rate = 1;
      if (rate !== video.playbackRate) video.playbackRate = rate;
    }, 250);
    hls.on(Hls.Events.DESTROYING, () => {
      clearInterval(timer);
      video.playbackRate = 1;
    });
  }

  // --- HLS the browser plays itself ----------------------------------------------------

  function startNativeHls(attemptState) {
    // Cross-origin frames may be read (for the timecode) only with CORS.
    video.crossOrigin = "anonymous";
    const onError = () => failHttp(attemptState, config.hls);
    video.addEventListener("error", onError);
    video.src = config.hls;
    return {
      destroy() {
        video.removeEventListener("error", onError);
        video.removeAttribute("crossorigin");
      },
    };
  }

  // --- Errors in a viewer's words ----------------------------------------------------------

  // {words, kind} of a refusal: `reason` its X-LiveCenter-Error (or null), `status` its HTTP status.
  function refusalOf(reason, status) {
    if (reason && REASONS[reason]) return { words: REASONS[reason][0], kind: REASONS[reason][1] };
    const kind = status === 404 ? "not_live" : status === 403 ? "denied" : "network";
    if (reason) return { words: "The media server refused to play the stream: " + reason + ".", kind: kind };
    if (status === 404) return { words: "The stream is not live.", kind: kind };
    if (status === 403) return { words: "Access denied.", kind: kind };
    return { words: "The media server answered HTTP " + status + ".", kind: kind };
  }

  // The libraries report a failed request without its headers; ask again
  // for the refusal's reason (the media server names it in
  // X-LiveCenter-Error and in the text body, for 403 and 404):
  // {status, reason} for a refusal, {words} otherwise.
  async function explainHttpFailure(url) {
    const controller = new AbortController();
    try {
      const response = await fetch(url, { signal: controller.signal, cache: "no-store" });
      if (response.ok) {
        controller.abort();
        return { words: "The stream stopped or could not be read." };
      }
      let reason = response.headers.get("X-LiveCenter-Error");
      if (!reason) reason = (await response.text()).trim().split("\n")[0] || null;
      return { status: response.status, reason: reason };
    } catch (err) {
      return { words: "Cannot reach the media server at " + new URL(url).host + "." };
    }
  }

  function showError(message, notice) {
    const box = el("player-error");
    box.textContent = message;
    // Not live is a notice (it will start by itself), not an error.
    box.classList.toggle("alert-danger", !notice);
    box.classList.toggle("alert-warning", Boolean(notice));
    box.dataset.state = notice ? "not-live" : "error";
    box.classList.remove("d-none");
  }

  function hideError() {
    el("player-error").classList.add("d-none");
    delete el("player-error").dataset.state;
  }

  // --- Per-frame work: first frame, frame rate, the calibrator's timecode --------------

  const canvas = document.createElement("canvas");
  const context = canvas.getContext("2d", { willReadFrequently: true });
  const fpsWindow = { frames: 0, since: null };

  function onFrame(now, metadata) {
    stats.framesPresented = metadata.presentedFrames;
    if (fpsWindow.since === null) {
      fpsWindow.since = now;
      fpsWindow.frames = metadata.presentedFrames;
    } else if (now - fpsWindow.since >= 1000) {
      stats.fps = ((metadata.presentedFrames - fpsWindow.frames) * 1000) / (now - fpsWindow.since);
      fpsWindow.since = now;
      fpsWindow.frames = metadata.presentedFrames;
    }
    firstFrame();
    readTimecode(metadata);
    frameCallback = video.requestVideoFrameCallback(onFrame);
  }

  function watchFrames() {
    if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) return;
    if (frameCallback === null) frameCallback = video.requestVideoFrameCallback(onFrame);
  }

  function readTimecode(metadata) {
    const width = video.videoWidth;
    const block = Math.floor(width / TC_COLUMNS);
    if (block < TC_MIN_BLOCK_PX || video.videoHeight < TC_ROWS * block) return;
    const height = TC_ROWS * block;
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    let pixels;
    try {
      context.drawImage(video, 0, 0, width, height, 0, 0, width, height);
      pixels = context.getImageData(0, 0, width, height).data;
    } catch (err) {
      return; // a cross-origin picture without CORS cannot be read
    }
    const captureMs = decodeTimecode(pixels, width, block);
    if (captureMs === null) return;
    // The time the frame is shown: the compositor's estimate when the
    // browser gives one, else now.
    const shownMs = metadata.expectedDisplayTime
      ? performance.timeOrigin + metadata.expectedDisplayTime
      : Date.now();
    stats.timecodeFound = true;
    stats.latencyMs = Math.round(shownMs - captureMs);
    stats.latencySamples.push(stats.latencyMs);
    if (stats.latencySamples.length > LATENCY_SAMPLES_KEPT) stats.latencySamples.shift();
    report("latency", { latency_ms: stats.latencyMs });
  }

  // The mean luma of the middle half of each block against the threshold,
  // as timecode.decode_luma does; null unless the marker and CRC match.
  function decodeTimecode(pixels, width, block) {
    const lo = Math.floor(block / 4);
    const span = block - 2 * lo;
    const bits = [];
    for (let i = 0; i < TC_COLUMNS * TC_ROWS; i++) {
      const x0 = (i % TC_COLUMNS) * block + lo;
      const y0 = Math.floor(i / TC_COLUMNS) * block + lo;
      let total = 0;
      for (let y = y0; y < y0 + span; y++) {
        let offset = (y * width + x0) * 4;
        for (let x = 0; x < span; x++, offset += 4) {
          // BT.601 luma of the RGB the browser converted to.
          total += 0.299 * pixels[offset] + 0.587 * pixels[offset + 1] + 0.114 * pixels[offset + 2];
        }
      }
      bits.push(total > TC_THRESHOLD_LUMA * span * span ? 1 : 0);
    }
    const field = (from, count) => bits.slice(from, from + count).reduce((value, bit) => value * 2 + bit, 0);
    if (field(0, 16) !== TC_SYNC_MARKER) return null;
    const timeBytes = [];
    for (let i = 0; i < 8; i++) timeBytes.push(field(16 + i * 8, 8));
    if (field(80, 16) !== crc16(timeBytes)) return null;
    // Epoch milliseconds fit in a double's 53 bits until the year 287,396.
    return timeBytes.reduce((value, byte) => value * 256 + byte, 0);
  }

  // CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF (Python's binascii.crc_hqx).
  function crc16(bytes) {
    let crc = 0xffff;
    for (const byte of bytes) {
      crc ^= byte << 8;
      for (let bit = 0; bit < 8; bit++) {
        crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
      }
    }
    return crc;
  }

  // Without requestVideoFrameCallback: the first frame from "playing", the
  // frame rate from getVideoPlaybackQuality, no timecode.
  const qualityWindow = { frames: 0, since: null };

  function pollQuality() {
    if (!video.getVideoPlaybackQuality) return;
    const frames = video.getVideoPlaybackQuality().totalVideoFrames;
    const now = performance.now();
    if (qualityWindow.since !== null && now - qualityWindow.since >= 1000) {
      stats.fps = ((frames - qualityWindow.frames) * 1000) / (now - qualityWindow.since);
    }
    if (qualityWindow.since === null || now - qualityWindow.since >= 1000) {
      qualityWindow.since = now;
      qualityWindow.frames = frames;
    }
    stats.framesPresented = frames;
  }

  // --- The readout -----------------------------------------------------------------------

  function bufferAhead() {
    const t = video.currentTime;
    for (let i = 0; i < video.buffered.length; i++) {
      if (video.buffered.start(i) <= t + 0.1 && t <= video.buffered.end(i)) return video.buffered.end(i) - t;
    }
    return 0;
  }

  function render() {
    if (stats.state === "not live" && retryTimer) {
      const seconds = Math.max(0, Math.ceil((stats.retryAt - Date.now()) / 1000));
      showError(stats.error + " Trying again in " + seconds + " s; it starts by itself when it goes live.", true);
    } else if (stats.state === "connecting" && el("player-error").dataset.state === "not-live") {
      showError(stats.error + " Checking whether it is live now…", true);
    }
    const rung = RUNGS.find((r) => r.name === stats.protocol);
    el("player-protocol").textContent = rung ? rung.label : "—";
    el("player-state").textContent = stats.state;
    const badge = el("player-encrypted");
    badge.textContent = "encrypted (" + (stats.encryption || "") + ")";
    badge.classList.toggle("d-none", !stats.encryption);
    el("player-resolution").textContent = stats.width ? stats.width + "×" + stats.height : "—";
    el("player-fps").textContent = stats.fps !== null ? stats.fps.toFixed(1) + " fps" : "—";
    el("player-buffer").textContent = stats.bufferSeconds !== null ? stats.bufferSeconds.toFixed(2) + " s" : "—";
    el("player-bitrate").textContent = stats.bitrateKbps !== null ? stats.bitrateKbps + " kbit/s" : "—";
    el("first-frame-ms").textContent = stats.firstFrameMs !== null ? stats.firstFrameMs + " ms" : "—";
    el("latency-ms").textContent =
      stats.latencyMs !== null ? stats.latencyMs + " ms" : stats.state === "playing" ? "no calibrator timecode" : "—";
  }

  function tick() {
    stats.width = video.videoWidth;
    stats.height = video.videoHeight;
    stats.currentTime = video.currentTime;
    // WebRTC has no MSE buffer; its jitter buffer comes from getStats (startRts).
    if (stats.state === "playing" && stats.protocol !== "rts") stats.bufferSeconds = bufferAhead();
    if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) pollQuality();
    render();
  }

  // --- Wiring ------------------------------------------------------------------------------

  video.muted = true; // autoplay with sound is blocked; the button unmutes
  const unmute = el("player-unmute");
  unmute.addEventListener("click", () => {
    video.muted = false;
    video.play().catch(() => {});
    unmute.classList.add("d-none");
  });
  video.addEventListener("volumechange", () => unmute.classList.toggle("d-none", !video.muted));
  video.addEventListener("waiting", () => {
    // A seek waits for its frame, and hls.js seeks once on its own: playback
    // begins at the independent part it loads first, then hls.js moves it to
    // its start position (PART-HOLD-BACK from the live edge). Playback that
    // runs out of media is not seeking.
    if (stats.state === "playing" && !video.seeking) {
      stats.stalls += 1;
      // Out of media: buffering until the next frame (firstFrame).
      stats.state = "buffering";
      render();
    }
  });
  if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) {
    video.addEventListener("playing", firstFrame);
  }
  setInterval(tick, STATS_INTERVAL_MS);
  run();
})();
