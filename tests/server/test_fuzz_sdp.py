"""Hostile SDP offers: a real aiortc offer cut, spliced and poisoned (lines dropped or repeated, NUL bytes,
absurd ports and codecs, thousands of candidates, huge bodies, no m-lines), posted as a session offer. Each is
either negotiated (and then hung up) or refused with a 4xx in the JSON error shape; never a 5xx, a logged
exception or a session left behind."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from hypothesis import example, given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from server.signalling import MAX_SDP_LENGTH
from server.speaking_track import SpeakingTrack
from tests.server.fuzzing import LogWatcher, app_client, assert_json_error, assert_no_sessions, examples, tried

HOSTILE_LINES = [
    "m=audio 99999999 UDP/TLS/RTP/SAVPF 111",
    "m=audio -1 UDP/TLS/RTP/SAVPF 111",
    "m=video 9 UDP/TLS/RTP/SAVPF",
    "m=video 9 UDP/TLS/RTP/SAVPF 300 -5 abc",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "m=",
    "a=rtpmap:111 opus/0/0",
    "a=rtpmap:96 VP8/-90000",
    "a=rtpmap:999999 H264/90000",
    "a=rtpmap:abc",
    "a=fmtp:96 " + "x=" * 500,
    "a=rtcp-fb:96 nack pli ccm fir goog-remb transport-cc " * 20,
    "a=candidate:1 1 udp 2130706431 127.0.0.1 70000 typ host",
    "a=candidate:1 1 udp 2130706431 999.1.1.1 9 typ host",
    "a=candidate:1 1 udp 2130706431 :::: 9 typ host",
    "a=candidate:1 1 udp -5 127.0.0.1 9 typ relay raddr 0.0.0.0 rport 0",
    "a=candidate:1 1 tcp 1 127.0.0.1 9 typ host tcptype active",
    "a=candidate:1 1 udp 1 fuzz.local 9 typ host",
    "a=candidate:",
    "a=end-of-candidates",
    "a=ice-ufrag:",
    "a=ice-pwd:",
    "a=ice-ufrag:" + "u" * 5000,
    "a=fingerprint:sha-256 ZZ",
    "a=fingerprint:md5 00:11",
    "a=fingerprint:",
    "a=setup:nonsense",
    "a=setup:passive",
    "a=mid:",
    "a=group:BUNDLE 7 8 9",
    "a=ssrc:4294967296 cname:x",
    "a=ssrc-group:FID 1",
    "a=msid:",
    "a=extmap:99999 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=sctp-port:-1",
    "a=max-message-size:99999999999999999999",
    "c=IN IP4",
    "c=IN IP6 999.1.1.1",
    "b=AS:-1",
    "o=- 0 0 IN IP4",
    "v=1",
    "\x00" * 16,
    "a=\x00candidate",
    "a=rtpmap:111 \ud7ff\ufffd/48000/2",
]


@pytest.fixture(scope="module")
def offer_sdp() -> str:
    """A real offer, as aiortc (like a browser) writes it: the microphone sent, video received."""

    async def make_offer() -> str:
        peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        peer.addTransceiver(SpeakingTrack(np.zeros(48_000, dtype=np.float32)), direction="sendrecv")
        peer.addTransceiver("video", direction="recvonly")
        await peer.setLocalDescription(await peer.createOffer())
        sdp: str = peer.localDescription.sdp
        await peer.close()
        return sdp

    return asyncio.run(make_offer())


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with app_client(tmp_path_factory.mktemp("fuzz-sdp")) as test_client:
        yield test_client


@st.composite
def hostile_offers(draw: st.DrawFn, sdp: str) -> str:
    lines = sdp.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["drop", "repeat", "poison", "replace", "nul", "truncate", "flood"]))
        place = draw(st.integers(0, len(lines) - 1)) if lines else 0
        if not lines:
            lines = [draw(st.sampled_from(HOSTILE_LINES))]
        elif action == "drop":
            del lines[place]
        elif action == "repeat":
            lines[place:place] = [lines[place]] * draw(st.integers(1, 50))
        elif action == "poison":
            lines.insert(place, draw(st.sampled_from(HOSTILE_LINES)))
        elif action == "replace":
            lines[place] = draw(st.sampled_from(HOSTILE_LINES) | st.text(max_size=60))
        elif action == "nul":
            line = lines[place]
            cut = draw(st.integers(0, len(line)))
            lines[place] = line[:cut] + "\x00" + line[cut:]
        elif action == "truncate":
            lines = lines[:place]
        else:
            candidates = [line for line in lines if line.startswith("a=candidate")] or HOSTILE_LINES
            candidate = draw(st.sampled_from(candidates))
            lines[place:place] = [candidate] * draw(st.integers(100, 3000))
    return draw(st.sampled_from(["\r\n", "\n"])).join(lines) + "\r\n"


def post_offer(client: TestClient, sdp: str) -> int:
    """The status the offer got; a session it started is hung up."""
    response = client.post("/api/sessions", json={"sdp": sdp, "type": "offer"})
    if response.status_code == 201:
        assert client.delete(f"/api/sessions/{response.json()['session_id']}").status_code == 204
    else:
        assert_json_error(response)
    return response.status_code


@examples(80)
@given(data=st.data())
def test_a_hostile_offer_is_negotiated_or_refused_with_a_json_4xx(
    client: TestClient, error_logs: LogWatcher, offer_sdp: str, data: st.DataObject
) -> None:
    sdp = data.draw(hostile_offers(offer_sdp), label="sdp")
    status = post_offer(client, sdp)
    tried(f"hostile SDP offer (POST /api/sessions) → {status}")
    error_logs.assert_quiet()
    assert_no_sessions(client)


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory, offer_sdp: str) -> Iterator[tuple[TestClient, str]]:
    """A server with one session for viewers to join; its ICE never connects, and it waits long enough not to
    mind."""
    with app_client(tmp_path_factory.mktemp("fuzz-viewers"), media_timeout=600) as test_client:
        answer = test_client.post("/api/sessions", json={"sdp": offer_sdp, "type": "offer"})
        assert answer.status_code == 201, answer.text
        yield test_client, answer.json()["session_id"]


@examples(40)
@given(data=st.data())
def test_a_hostile_viewer_offer_joins_or_is_refused_with_a_json_4xx(
    watched: tuple[TestClient, str], error_logs: LogWatcher, offer_sdp: str, data: st.DataObject
) -> None:
    client, session_id = watched
    sdp = data.draw(hostile_offers(offer_sdp.replace("a=sendrecv", "a=recvonly")), label="sdp")
    response = client.post(f"/api/sessions/{session_id}/viewers", json={"sdp": sdp, "type": "offer"})
    tried(f"hostile SDP viewer offer (POST /api/sessions/{{id}}/viewers) → {response.status_code}")
    if response.status_code == 201:
        viewer = response.json()["viewer_id"]
        assert client.delete(f"/api/sessions/{session_id}/viewers/{viewer}").status_code == 204
    else:
        assert_json_error(response)
    error_logs.assert_quiet()
    assert [session["viewers"] for session in client.get("/api/sessions").json()["sessions"]] == [0]


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda sdp: sdp.replace("a=mid:0\r\n", "", 1), id="a-section-without-mid"),
        pytest.param(lambda sdp: sdp.replace("a=mid:1\r\n", "a=mid:0\r\n", 1), id="two-sections-one-mid"),
        pytest.param(lambda sdp: sdp.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 7", 1), id="bundle-stranger"),
    ],
)
def test_an_offer_whose_sections_cannot_be_told_apart_is_refused_with_400(
    client: TestClient, error_logs: LogWatcher, offer_sdp: str, spoil: Callable[[str], str]
) -> None:
    """Found by the fuzzer: aiortc answered such an offer with a 500 (and a failed task in the log)."""
    spoiled = spoil(offer_sdp)
    assert spoiled != offer_sdp
    response = client.post("/api/sessions", json={"sdp": spoiled, "type": "offer"})
    assert_json_error(response)
    assert response.json()["error"]["code"] == "malformed_sdp"
    error_logs.assert_quiet()
    assert_no_sessions(client)


@examples(20)
@given(sdp=st.text(max_size=300) | st.binary(max_size=300).map(lambda raw: raw.decode("latin-1")))
@example(sdp="")
@example(sdp="v=0\r\n" * (MAX_SDP_LENGTH // 5 + 1))
@example(sdp="\x00" * 1000)
@example(sdp="v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n")
def test_an_offer_that_is_not_sdp_at_all_is_refused_with_a_json_4xx(
    client: TestClient, error_logs: LogWatcher, sdp: str
) -> None:
    tried("non-SDP offer (POST /api/sessions)")
    response = client.post("/api/sessions", json={"sdp": sdp, "type": "offer"})
    assert_json_error(response)
    error_logs.assert_quiet()
    assert_no_sessions(client)
