// EchoMimic Live web client: pick an avatar, send the microphone over WebRTC, show the avatar's video.
"use strict";

const elements = {
  video: document.getElementById("avatar-video"),
  hint: document.getElementById("stage-hint"),
  state: document.getElementById("connection-state"),
  avatarList: document.getElementById("avatar-list"),
  upload: document.getElementById("avatar-upload"),
  start: document.getElementById("start-button"),
  stop: document.getElementById("stop-button"),
  micLevel: document.getElementById("mic-level"),
  hearVoice: document.getElementById("hear-voice"),
  message: document.getElementById("message"),
  fps: document.getElementById("stat-fps"),
  latency: document.getElementById("stat-latency"),
  rtt: document.getElementById("stat-rtt"),
  videoInfo: document.getElementById("stat-video"),
  share: document.getElementById("share"),
  shareLink: document.getElementById("share-link"),
};

const STATS_INTERVAL_MS = 1000;

let selectedAvatar = null;
let session = null;
takeFragmentToken(TOKEN_KEY, { clearFragment: true });

// ---- messages and state -------------------------------------------------------------------------------------

function showMessage(text, kind = "error") {
  elements.message.textContent = text;
  elements.message.dataset.kind = kind;
  elements.message.hidden = false;
}

function clearMessage() {
  elements.message.hidden = true;
  elements.message.textContent = "";
}

function setState(state) {
  elements.state.textContent = state;
  elements.state.dataset.state = state;
  const live = state !== "idle" && state !== "ended" && state !== "failed";
  elements.start.disabled = live;
  elements.stop.disabled = !live;
  elements.hint.hidden = live;
}

// ---- avatars ------------------------------------------------------------------------------------------------

async function loadAvatars(preferred) {
  const { avatars, default: defaultName } = await readJson(await apiFetch("/api/avatars"));
  elements.avatarList.replaceChildren(...avatars.map(avatarButton));
  const names = avatars.map((avatar) => avatar.name);
  selectAvatar(names.includes(preferred) ? preferred : names.includes(selectedAvatar) ? selectedAvatar : defaultName);
}

function avatarButton(avatar) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "avatar";
  button.dataset.name = avatar.name;
  button.setAttribute("role", "radio");
  button.title = avatar.name;
  const image = document.createElement("img");
  image.alt = avatar.name;
  // Fetched rather than linked: an <img> cannot send the token.
  apiFetch(`/api/avatars/${encodeURIComponent(avatar.name)}/image`)
    .then((response) => (response.ok ? response.blob() : null))
    .then((blob) => {
      if (blob) image.src = URL.createObjectURL(blob);
    })
    .catch(() => {});
  const label = document.createElement("span");
  label.textContent = avatar.name;
  button.append(image, label);
  button.addEventListener("click", () => selectAvatar(avatar.name));
  return button;
}

function selectAvatar(name) {
  selectedAvatar = name;
  for (const button of elements.avatarList.querySelectorAll(".avatar")) {
    button.setAttribute("aria-checked", String(button.dataset.name === name));
  }
}

async function uploadAvatar(file) {
  clearMessage();
  const form = new FormData();
  form.append("image", file, file.name);
  showMessage(`Checking ${file.name} for a face…`, "info");
  try {
    const avatar = await readJson(await apiFetch("/api/avatars", { method: "POST", body: form }));
    await loadAvatars(avatar.name);
    showMessage(`Added “${avatar.name}”. It is selected for the next session.`, "info");
  } catch (error) {
    showMessage(`Upload refused: ${error instanceof ServerError ? describeRefusal(error) : error.message}`);
  } finally {
    elements.upload.value = "";
  }
}

// ---- session ------------------------------------------------------------------------------------------------

async function startSession() {
  clearMessage();
  if (!navigator.mediaDevices || !window.isSecureContext) {
    showMessage("The browser allows the microphone only on secure pages: open this page over https:// or as http://localhost.");
    return;
  }
  setState("connecting");
  let microphone;
  try {
    microphone = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      video: false,
    });
  } catch (error) {
    setState("idle");
    showMessage(microphoneProblem(error));
    return;
  }

  let config;
  try {
    config = await pageConfig();
  } catch (error) {
    microphone.getTracks().forEach((track) => track.stop());
    setState("failed");
    showMessage(describeRefusal(error));
    return;
  }
  const peer = new RTCPeerConnection({ iceServers: config.ice_servers });
  session = {
    peer,
    microphone,
    id: null,
    hangUpSecret: null,
    connected: false,
    playoutDelay: 0,
    meter: startLevelMeter(microphone),
    statsTimer: null,
  };
  peer.addTransceiver(microphone.getAudioTracks()[0], { direction: "sendrecv" });
  peer.addTransceiver("video", { direction: "recvonly" });
  // The server sends video and the echoed voice in one stream, so the browser keeps them lip-synced.
  const remote = new MediaStream();
  elements.video.srcObject = remote;
  peer.addEventListener("track", (event) => remote.addTrack(event.track));
  peer.addEventListener("connectionstatechange", () => onConnectionState(peer));

  try {
    await peer.setLocalDescription(await peer.createOffer());
    await iceGatheringComplete(peer, config.ice_gathering_timeout);
    const answer = await readJson(
      await apiFetch("/api/sessions", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sdp: peer.localDescription.sdp, type: "offer", avatar: selectedAvatar }),
      }),
    );
    session.id = answer.session_id;
    session.hangUpSecret = answer.hang_up_secret;
    session.playoutDelay = answer.playout_delay;
    showShareLink(answer);
    await peer.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    session.statsTimer = setInterval(() => updateStats(peer), STATS_INTERVAL_MS);
  } catch (error) {
    await stopSession();
    setState("failed");
    showMessage(describeRefusal(error));
  }
}

function microphoneProblem(error) {
  switch (error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access was denied. Allow the microphone for this page in the browser's site settings, then press Start again.";
    case "NotFoundError":
      return "No microphone was found. Connect one, then press Start again.";
    case "NotReadableError":
      return "The microphone is in use by another program or could not be opened.";
    default:
      return `The microphone could not be opened: ${error.message}`;
  }
}

function onConnectionState(peer) {
  if (!session || session.peer !== peer) return;
  const state = peer.connectionState;
  if (state === "connected") {
    session.connected = true;
    setState("live");
  } else if (state === "failed") {
    const everConnected = session.connected;
    stopSession().then(() => {
      setState("failed");
      showMessage(everConnected ? "The connection to the server was lost. Press Start to try again." : ICE_FAILED_MESSAGE);
    });
  } else if (state === "connecting" || state === "disconnected") setState(state);
}

async function stopSession() {
  if (!session) return;
  const { peer, microphone, id, hangUpSecret, meter, statsTimer } = session;
  session = null;
  elements.share.hidden = true;
  clearInterval(statsTimer);
  meter.stop();
  microphone.getTracks().forEach((track) => track.stop());
  peer.close();
  elements.video.srcObject = null;
  resetStats();
  setState("ended");
  if (id) await hangUp(id, hangUpSecret).catch(() => {});
}

// The session's own secret ends it, so hanging up needs no token (and works with one stored or not).
function hangUp(id, hangUpSecret) {
  return apiFetch(`/api/sessions/${encodeURIComponent(id)}`, {
    method: "DELETE",
    keepalive: true,
    credential: hangUpSecret || undefined,
  });
}

// A link others can watch the session with; its viewer token rides in the fragment, which no server receives.
function showShareLink(answer) {
  const fragment = answer.viewer_token ? `#token=${encodeURIComponent(answer.viewer_token)}` : "";
  const url = `${location.origin}/watch/${encodeURIComponent(answer.session_id)}${fragment}`;
  elements.shareLink.href = url;
  elements.shareLink.textContent = url;
  elements.share.hidden = false;
}

// ---- microphone level -----------------------------------------------------------------------------------------

function startLevelMeter(stream) {
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 1024;
  context.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  let frame = 0;
  const draw = () => {
    analyser.getFloatTimeDomainData(samples);
    let energy = 0;
    for (const sample of samples) energy += sample * sample;
    const rms = Math.sqrt(energy / samples.length);
    // Speech sits around -30 to -10 dBFS; map -60..0 dBFS onto the meter.
    elements.micLevel.value = Math.max(0, 1 + (20 * Math.log10(rms + 1e-9)) / 60);
    frame = requestAnimationFrame(draw);
  };
  draw();
  return {
    stop() {
      cancelAnimationFrame(frame);
      context.close();
      elements.micLevel.value = 0;
    },
  };
}

// ---- stats ----------------------------------------------------------------------------------------------------

async function updateStats(peer) {
  const report = await peer.getStats();
  let video = null;
  let pair = null;
  const codecs = new Map();
  report.forEach((stat) => {
    if (stat.type === "inbound-rtp" && stat.kind === "video") video = stat;
    if (stat.type === "candidate-pair" && stat.nominated && stat.state === "succeeded") pair = stat;
    if (stat.type === "codec") codecs.set(stat.id, stat.mimeType);
  });
  const rtt = pair && pair.currentRoundTripTime !== undefined ? pair.currentRoundTripTime : null;
  elements.rtt.textContent = rtt === null ? "–" : `${Math.round(rtt * 1000)} ms`;
  if (!video) return;
  elements.fps.textContent = video.framesPerSecond ? `${video.framesPerSecond.toFixed(0)} fps` : "–";
  const buffered = video.jitterBufferEmittedCount ? video.jitterBufferDelay / video.jitterBufferEmittedCount : 0;
  const latency = session ? session.playoutDelay + (rtt || 0) / 2 + buffered : null;
  elements.latency.textContent = latency === null ? "–" : `${Math.round(latency * 1000)} ms`;
  const codec = (codecs.get(video.codecId) || "").replace("video/", "");
  elements.videoInfo.textContent = video.frameWidth ? `${video.frameWidth}×${video.frameHeight} ${codec}` : "–";
}

function resetStats() {
  for (const field of [elements.fps, elements.latency, elements.rtt, elements.videoInfo]) field.textContent = "–";
}

// ---- wiring ---------------------------------------------------------------------------------------------------

elements.start.addEventListener("click", startSession);
elements.stop.addEventListener("click", stopSession);
elements.upload.addEventListener("change", () => {
  if (elements.upload.files.length) uploadAvatar(elements.upload.files[0]);
});
elements.hearVoice.addEventListener("change", () => {
  elements.video.muted = !elements.hearVoice.checked;
});
window.addEventListener("pagehide", () => {
  if (session && session.id) hangUp(session.id, session.hangUpSecret);
});

setState("idle");
loadAvatars().catch((error) => showMessage(`Could not load the avatars. ${describeRefusal(error)}`));
