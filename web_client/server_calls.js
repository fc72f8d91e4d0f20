// What the web client and the watch page both need from the server: authorized calls, its JSON answers, the
// ICE configuration, complete SDP offers, and a plain-words reason when a call fails.
"use strict";

// The server's access token, once given, is kept for this tab only (sessionStorage), never in a cookie.
const TOKEN_KEY = "echolive-token";
const DEFAULT_ICE_GATHERING_TIMEOUT = 4;

class ServerError extends Error {
  constructor(message, status, code, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

// A credential handed over in the URL fragment (`#token=...`), which browsers never send to a server; kept in
// sessionStorage under `key` so that a reload still has it. Returns the credential, or null.
function takeFragmentToken(key, { clearFragment }) {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem(key, decodeURIComponent(match[1]));
    if (clearFragment) history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(key);
}

// fetch, with `Authorization: Bearer` from `options.credential` or the stored token. When the server answers 401
// for want of its token, the person is asked for it once; it is kept for the tab and the call is made again.
async function apiFetch(url, options = {}) {
  const { credential, ...init } = options;
  const send = (token) =>
    fetch(url, { ...init, headers: { ...(init.headers || {}), ...(token ? { Authorization: `Bearer ${token}` } : {}) } });
  const response = await send(credential || sessionStorage.getItem(TOKEN_KEY));
  if (response.status !== 401 || credential) return response;
  const token = window.prompt("This server needs its access token. Paste it here (it is kept for this tab only):");
  if (!token) return response;
  sessionStorage.setItem(TOKEN_KEY, token.trim());
  return send(token.trim());
}

// The body of a successful answer; a ServerError carrying the server's own message otherwise.
async function readJson(response) {
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `the server answered ${response.status}`;
    const code = body && body.error ? body.error.code : null;
    const retryAfter = Number(response.headers.get("Retry-After")) || null;
    throw new ServerError(message, response.status, code, retryAfter);
  }
  return body;
}

// A refused call in words a person can act on.
function describeRefusal(error) {
  if (!(error instanceof ServerError)) return error.message;
  if (error.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    return error.code === "viewer_link_expired"
      ? "This link has expired: ask for a new one."
      : "The server needs its access token, and the one given (if any) was not right. Reload the page to enter it again.";
  }
  if (error.status === 503) {
    const wait = error.retryAfter ? ` Try again in ${error.retryAfter} s.` : " Try again in a little while.";
    return `The server is full right now (${error.message}).${wait}`;
  }
  return `The server refused: ${error.message}`;
}

// The STUN/TURN servers to gather through and how long to gather, as the server is configured.
async function pageConfig(credential) {
  return readJson(await apiFetch("/api/config", { credential }));
}

// ICE is not trickled: an offer is sent once every candidate is in it, or after `timeoutSeconds` with those found
// so far (a STUN or TURN server that does not answer must not hang the call).
function iceGatheringComplete(peer, timeoutSeconds = DEFAULT_ICE_GATHERING_TIMEOUT) {
  if (peer.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutSeconds * 1000);
    peer.addEventListener("icegatheringstatechange", () => {
      if (peer.iceGatheringState === "complete") {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

const ICE_FAILED_MESSAGE =
  "The browser and the server could not reach each other (ICE failed). A NAT or firewall is likely in between: " +
  "the server needs a TURN server (echolive serve --ice-server turn:... --turn-username ... --turn-credential ...).";
