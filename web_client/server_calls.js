// What the web client and the watch page both need from the server: its JSON answers, and complete SDP offers.
"use strict";

class ServerError extends Error {}

// The body of a successful answer; a ServerError carrying the server's own message otherwise.
async function readJson(response) {
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `the server answered ${response.status}`;
    throw new ServerError(message);
  }
  return body;
}

// ICE is not trickled: an offer is sent once every candidate is in it.
function iceGatheringComplete(peer) {
  if (peer.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    peer.addEventListener("icegatheringstatechange", () => {
      if (peer.iceGatheringState === "complete") resolve();
    });
  });
}
