// EchoMimic Live watch page: receive one session's video and voice over WebRTC; send nothing.
"use strict";

const elements = {
  video: document.getElementById("avatar-video"),
  hint: document.getElementById("stage-hint"),
  state: document.getElementById("connection-state"),
  message: document.getElementById("message"),
  sound: document.getElementById("sound-button"),
  rejoin: document.getElementById("rejoin-button"),
};

const sessionId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
const viewersUrl = `/api/sessions/${encodeURIComponent(sessionId)}/viewers`;
// The link's viewer token (`#token=...`) lets this page watch this one session; without one, the server's token
// is asked for when the server wants it.
const viewerToken = takeFragmentToken(`echolive-viewer-token:${sessionId}`, { clearFragment: false });
let viewer = null;

function showMessage(text) {
  elements.message.textContent = text;
  elements.message.dataset.kind = "error";
  elements.message.hidden = false;
}

function setState(state) {
  elements.state.textContent = state;
  elements.state.dataset.state = state;
  elements.hint.hidden = state === "live";
  elements.rejoin.hidden = state !== "ended" && state !== "failed";
}

async function watch() {
  elements.message.hidden = true;
  setState("connecting");
  let config;
  try {
    config = await pageConfig(viewerToken);
  } catch (error) {
    setState("failed");
    showMessage(`Could not watch this session. ${describeRefusal(error)}`);
    return;
  }
  const peer = new RTCPeerConnection({ iceServers: config.ice_servers });
  viewer = { peer, id: null, connected: false };
  peer.addTransceiver("video", { direction: "recvonly" });
  peer.addTransceiver("audio", { direction: "recvonly" });
  const remote = new MediaStream();
  elements.video.srcObject = remote;
  peer.addEventListener("track", (event) => remote.addTrack(event.track));
  peer.addEventListener("connectionstatechange", () => onConnectionState(peer));
  try {
    await peer.setLocalDescription(await peer.createOffer());
    await iceGatheringComplete(peer, config.ice_gathering_timeout);
    const answer = await readJson(
      await apiFetch(viewersUrl, {
        credential: viewerToken,
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sdp: peer.localDescription.sdp, type: "offer" }),
      }),
    );
    viewer.id = answer.viewer_id;
    await peer.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  } catch (error) {
    leave();
    setState("failed");
    showMessage(`Could not watch this session. ${describeRefusal(error)}`);
  }
}

function onConnectionState(peer) {
  if (!viewer || viewer.peer !== peer) return;
  const state = peer.connectionState;
  if (state === "connected") {
    viewer.connected = true;
    setState("live");
  } else if (state === "failed" || state === "closed" || state === "disconnected") {
    const everConnected = viewer.connected;
    leave();
    setState(everConnected ? "ended" : "failed");
    showMessage(everConnected ? "The session has ended, or the connection to it was lost." : ICE_FAILED_MESSAGE);
  }
}

function leave() {
  if (!viewer) return;
  const { peer, id } = viewer;
  viewer = null;
  peer.close();
  elements.video.srcObject = null;
  if (id) {
    apiFetch(`${viewersUrl}/${encodeURIComponent(id)}`, { method: "DELETE", keepalive: true, credential: viewerToken })
      .catch(() => {});
  }
}

elements.sound.addEventListener("click", () => {
  elements.video.muted = !elements.video.muted;
  elements.sound.textContent = elements.video.muted ? "Turn the sound on" : "Turn the sound off";
});
elements.rejoin.addEventListener("click", watch);
window.addEventListener("pagehide", leave);

watch();
