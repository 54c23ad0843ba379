// The console's Go live page (templates/streams/go_live.html; issue 17).
//
// The page gives the stream's signed WHIP URL in #golive-target
// (streams/golive.py). Start captures the camera and microphone
// (getUserMedia) or a screen (getDisplayMedia), shows it in the preview and
// publishes it over WHIP (RFC 9725): a send-only offer, H.264 preferred where
// the browser has it, POSTed once ICE gathering is complete (the node takes
// no trickled candidates: PATCH is 405), the 201's answer applied and its
// Location kept; Stop (or leaving the page) closes the connection and
// DELETEs the Location. A refusal (4xx) shows the node's reason
// (X-LiveCenter-Error). Once a second getStats()' outbound-rtp gives the
// outgoing resolution, frame rate, bitrate and codecs. Measurements are in
// window.livecenterGoLive.stats for tests. The signed URL is never logged.
(function () {
  "use strict";

  // How long to wait for ICE gathering before offering the candidates found
  // so far: with no STUN or TURN servers the host candidates come at once,
  // and the node learns any later address from the connectivity checks.
  const ICE_GATHER_TIMEOUT_MS = 5000;
  const STATS_INTERVAL_MS = 1000;
  // What to ask the camera for; the browser gives what it can.
  const CAMERA_CONSTRAINTS = {
    video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
    audio: true,
  };
  const SCREEN_CONSTRAINTS = { video: { frameRate: { ideal: 30 } }, audio: true };

  // The node's refusal reasons (X-LiveCenter-Error) that need a word of advice.
  const ADVICE = {
    "expired timestamp": "Reload the page for a freshly signed URL.",
    "invalid md5hash": "Reload the page: the ingest domain's key may have changed.",
    "stream is forbidden": "The stream is forbidden: resume it on the Streams page first.",
    "domain is disabled": "Enable the ingest domain first.",
  };

  const targetElement = document.getElementById("golive-target");
  if (!targetElement) return;
  const config = JSON.parse(targetElement.textContent);
  const el = (id) => document.getElementById(id);
  const preview = el("golive-preview");
  const startButton = el("golive-start");
  const stopButton = el("golive-stop");

  const stats = {
    state: "idle", // idle, capturing, gathering, publishing, live, stopped, failed
    connectionState: null, // pc.connectionState
    width: 0,
    height: 0,
    fps: null, // frames encoded a second
    bitrateKbps: null, // video and audio, RTP payload and headers
    videoCodec: null, // "H264", "VP8"
    audioCodec: null, // "opus"
    framesEncoded: 0,
    framesSent: 0,
    bytesSent: 0,
    refusal: null, // {status, reason} of a 4xx
    error: null,
  };
  window.livecenterGoLive = { stats: stats, config: config };

  let session = null; // {pc, media, location, timer, previous, closed}

  // --- Capture ---------------------------------------------------------------------

  function chosenSource() {
    const checked = document.querySelector('input[name="golive-source"]:checked');
    return checked ? checked.value : "camera";
  }

  async function capture(source) {
    if (!navigator.mediaDevices) {
      throw new Error("This browser gives pages no camera here: open the console over HTTPS or on localhost.");
    }
    if (source !== "screen") return navigator.mediaDevices.getUserMedia(CAMERA_CONSTRAINTS);
    const screen = await navigator.mediaDevices.getDisplayMedia(SCREEN_CONSTRAINTS);
    if (!screen.getAudioTracks().length) {
      // A window or a screen without its sound: the microphone, where allowed.
      try {
        const microphone = await navigator.mediaDevices.getUserMedia({ audio: true });
        microphone.getAudioTracks().forEach((track) => screen.addTrack(track));
      } catch (err) {
        // Video alone, then.
      }
    }
    return screen;
  }

  // --- WHIP --------------------------------------------------------------------------

  // H.264 first, packetization-mode=1 and constrained baseline before the
  // rest of its forms: the node passes it to WebRTC viewers untouched
  // (issue 17); VP8 and the others stay behind it as the fallback.
  function preferH264(transceiver) {
    if (typeof transceiver.setCodecPreferences !== "function") return;
    const rank = (codec) => {
      const fmtp = codec.sdpFmtpLine || "";
      return (fmtp.includes("packetization-mode=1") ? 0 : 2) + (fmtp.includes("profile-level-id=42e01f") ? 0 : 1);
    };
    const isH264 = (codec) => codec.mimeType.toLowerCase() === "video/h264";
    // A send-only transceiver sends what the sender can encode; older
    // browsers check preferences against the receiver's list only.
    for (const side of [window.RTCRtpSender, window.RTCRtpReceiver]) {
      const capabilities = side && side.getCapabilities && side.getCapabilities("video");
      if (!capabilities) continue;
      const h264 = capabilities.codecs.filter(isH264).sort((a, b) => rank(a) - rank(b));
      if (!h264.length) continue;
      try {
        transceiver.setCodecPreferences(h264.concat(capabilities.codecs.filter((codec) => !isH264(codec))));
        return;
      } catch (err) {
        // Not accepted from this side's list: try the other.
      }
    }
  }

  function iceGathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      };
      const check = () => {
        if (pc.iceGatheringState === "complete") done();
      };
      const timer = setTimeout(done, ICE_GATHER_TIMEOUT_MS);
      pc.addEventListener("icegatheringstatechange", check);
    });
  }

  async function refusalReason(response) {
    let reason = response.headers.get("X-LiveCenter-Error");
    if (!reason) {
      try {
        reason = (await response.text()).trim().split("\n")[0];
      } catch (err) {
        reason = "";
      }
    }
    return reason || response.statusText || "no reason given";
  }

  async function start() {
    if (session) return;
    hideError();
    Object.assign(stats, {
      state: "capturing",
      connectionState: null,
      width: 0,
      height: 0,
      fps: null,
      bitrateKbps: null,
      videoCodec: null,
      audioCodec: null,
      framesEncoded: 0,
      framesSent: 0,
      bytesSent: 0,
      refusal: null,
      error: null,
    });
    const current = { pc: null, media: null, location: null, timer: null, previous: null, closed: false };
    session = current;
    setRunning(true);
    render();
    try {
      current.media = await capture(chosenSource());
      if (current.closed) return stopTracks(current.media);
      preview.srcObject = current.media;
      current.media.getTracks().forEach((track) => {
        // The screen share stopped from the browser's own bar.
        track.addEventListener("ended", () => {
          if (session === current) stop("The " + track.kind + " source ended.");
        });
      });
      const pc = new RTCPeerConnection();
      current.pc = pc;
      pc.addEventListener("connectionstatechange", () => {
        if (session !== current) return;
        stats.connectionState = pc.connectionState;
        if (pc.connectionState === "connected") stats.state = "live";
        render();
        if (pc.connectionState === "failed") stop("The WebRTC connection failed (ICE or DTLS).");
      });
      // Video first, as publishers conventionally offer it.
      for (const track of [...current.media.getVideoTracks(), ...current.media.getAudioTracks()]) {
        const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [current.media] });
        if (track.kind === "video") preferH264(transceiver);
      }
      await pc.setLocalDescription(await pc.createOffer());
      stats.state = "gathering";
      render();
      await iceGathered(pc);
      if (current.closed) return;
      stats.state = "publishing";
      render();
      const response = await fetch(config.whip, {
        method: "POST",
        headers: { "Content-Type": "application/sdp" },
        body: pc.localDescription.sdp,
        cache: "no-store",
      });
      const resource = response.headers.get("Location");
      current.location = resource ? new URL(resource, config.whip).href : null;
      if (current.closed) {
        // Stopped while the offer was on its way: end the session it made.
        if (response.status === 201 && current.location) {
          fetch(current.location, { method: "DELETE" }).catch(() => {});
        }
        return;
      }
      if (response.status !== 201) {
        current.location = null;
        const reason = await refusalReason(response);
        stats.refusal = { status: response.status, reason: reason };
        const advice = ADVICE[reason] ? " " + ADVICE[reason] : "";
        stop("The node refused to publish (HTTP " + response.status + "): " + reason + "." + advice);
        return;
      }
      const answer = await response.text();
      if (current.closed) return;
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
      current.timer = setInterval(() => poll(current).catch(() => {}), STATS_INTERVAL_MS);
    } catch (err) {
      if (session === current) stop(describe(err));
    }
  }

  function describe(err) {
    if (err && err.name === "NotAllowedError") return "The browser was not allowed to use the camera or the screen.";
    if (err && err.name === "NotFoundError") return "This browser has no camera or microphone to use.";
    if (err instanceof TypeError && /fetch/i.test(err.message)) {
      return "The media node could not be reached for WHIP (network error, or the node is down).";
    }
    return "Could not go live: " + (err && err.message ? err.message : String(err));
  }

  function stopTracks(media) {
    if (media) media.getTracks().forEach((track) => track.stop());
  }

  // Stop publishing; `error` says why when it was not the Stop button.
  // `leaving`: the page is going away, so the DELETE must outlive it
  // (keepalive; a plain request otherwise, which any browser preflights).
  function stop(error, leaving) {
    const current = session;
    if (!current) return;
    session = null;
    current.closed = true;
    clearInterval(current.timer);
    if (current.pc) current.pc.close();
    stopTracks(current.media);
    preview.srcObject = null;
    if (current.location) {
      fetch(current.location, { method: "DELETE", keepalive: Boolean(leaving) }).catch(() => {});
    }
    stats.connectionState = current.pc ? current.pc.connectionState : stats.connectionState;
    stats.state = error ? "failed" : "stopped";
    stats.fps = null;
    stats.bitrateKbps = null;
    if (error) {
      stats.error = error;
      showError(error);
    }
    setRunning(false);
    render();
  }

  // --- Figures -------------------------------------------------------------------------

  async function poll(current) {
    if (current.closed) return;
    const report = await current.pc.getStats();
    if (current.closed) return;
    let bytes = 0;
    let video = null;
    let audio = null;
    report.forEach((entry) => {
      if (entry.type !== "outbound-rtp") return;
      bytes += (entry.bytesSent || 0) + (entry.headerBytesSent || 0);
      if (entry.kind === "video") video = entry;
      else if (entry.kind === "audio") audio = entry;
    });
    const codecName = (entry) => {
      const codec = entry && entry.codecId ? report.get(entry.codecId) : null;
      return codec && codec.mimeType ? codec.mimeType.split("/")[1] : null;
    };
    const now = performance.now();
    const frames = video ? video.framesEncoded || 0 : 0;
    const previous = current.previous;
    if (previous && now > previous.at) {
      const seconds = (now - previous.at) / 1000;
      stats.bitrateKbps = Math.round(((bytes - previous.bytes) * 8) / 1000 / seconds);
      stats.fps = Math.round(((frames - previous.frames) / seconds) * 10) / 10;
    }
    current.previous = { at: now, bytes: bytes, frames: frames };
    stats.bytesSent = bytes;
    stats.framesEncoded = frames;
    stats.framesSent = video ? video.framesSent || 0 : 0;
    stats.width = video ? video.frameWidth || 0 : 0;
    stats.height = video ? video.frameHeight || 0 : 0;
    stats.videoCodec = codecName(video);
    stats.audioCodec = codecName(audio);
    render();
  }

  // --- The page ------------------------------------------------------------------------

  function render() {
    el("golive-state").textContent = stats.state;
    el("golive-connection").textContent = stats.connectionState || "—";
    el("golive-resolution").textContent = stats.width ? stats.width + "×" + stats.height : "—";
    el("golive-fps").textContent = stats.fps === null ? "—" : stats.fps + " fps";
    el("golive-bitrate").textContent = stats.bitrateKbps === null ? "—" : stats.bitrateKbps + " kbit/s";
    el("golive-video-codec").textContent = stats.videoCodec || "—";
    el("golive-audio-codec").textContent = stats.audioCodec || "—";
  }

  function setRunning(running) {
    startButton.disabled = running;
    stopButton.disabled = !running;
    document.querySelectorAll('input[name="golive-source"]').forEach((input) => {
      input.disabled = running;
    });
  }

  function showError(message) {
    const box = el("golive-error");
    box.textContent = message;
    box.classList.remove("d-none");
  }

  function hideError() {
    el("golive-error").classList.add("d-none");
  }

  startButton.addEventListener("click", () => start());
  stopButton.addEventListener("click", () => stop(null));
  // Leaving the page ends the session at once rather than at the node's timeout.
  window.addEventListener("pagehide", () => stop(null, true));
  render();
})();
