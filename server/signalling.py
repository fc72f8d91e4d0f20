"""Offer in, answer out: checks a browser's SDP offer, admits a session and negotiates its peer connection; and
the same for a viewer joining a running session.

Takes and returns plain dataclasses; the HTTP routes are a thin shim over `Signalling`. ICE is not trickled:
the offer carries the client's candidates and the answer carries all of ours, so one request sets up a call.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import MediaDescription, SessionDescription

from server.access_control import AccessPolicy
from server.avatars import AvatarStore
from server.errors import ApiError
from server.ice_servers import IceServer, rtc_configuration
from server.session import Session
from server.session_registry import SessionRegistry
from server.viewers import Viewer

logger = logging.getLogger(__name__)

MAX_SDP_LENGTH = 64 * 1024
_SENDS_AUDIO = {"sendrecv", "sendonly"}
_RECEIVES = {"sendrecv", "recvonly"}


@dataclass(frozen=True)
class SessionOffer:
    """A client's request for a session: its SDP offer and the avatar to animate (None: the server's default)."""

    sdp: str
    type: str = "offer"
    avatar: str | None = None


@dataclass(frozen=True)
class SessionAnswer:
    session_id: str
    sdp: str
    type: str
    playout_delay: float
    """Seconds the server holds video behind the microphone audio; clients add it to their latency estimate."""
    hang_up_secret: str | None = None
    """With access control on: the bearer credential that lets this client end its session without the token."""
    viewer_token: str | None = None
    """With access control on: what a watch link carries (`/watch/{session_id}#token=...`) to watch this session."""


@dataclass(frozen=True)
class ViewerOffer:
    """A watcher's SDP offer: it must receive video, and receives the voice too if it offers to receive audio."""

    sdp: str
    type: str = "offer"


@dataclass(frozen=True)
class ViewerAnswer:
    viewer_id: str
    sdp: str
    type: str
    playout_delay: float


SessionFactory = Callable[[str, str, RTCPeerConnection, object], Session]
"""(session id, avatar name, peer connection, prepared avatar) -> a session not yet started."""


class Signalling:
    """Answers offers with started sessions and hangs sessions up; the `/api/sessions` routes call nothing else."""

    def __init__(
        self,
        registry: SessionRegistry,
        avatars: AvatarStore[object],
        new_session: SessionFactory,
        max_viewers: int,
        access: AccessPolicy,
        ice_servers: tuple[IceServer, ...] = (),
    ) -> None:
        self._registry = registry
        self._avatars = avatars
        self._new_session = new_session
        self._max_viewers = max_viewers
        self._access = access
        self._ice_servers = ice_servers
        self._viewer_departures: set[asyncio.Task[bool]] = set()

    async def answer(self, offer: SessionOffer) -> SessionAnswer:
        audio = _check_offer(offer.type, offer.sdp, microphone=True)
        assert audio is not None
        avatar_name = offer.avatar or self._avatars.default_name
        # Admission first: a refused offer costs no avatar preparation and no negotiation, and the slot is
        # given back if preparing the avatar fails or the client goes away meanwhile.
        with self._registry.reserve() as ticket:
            avatar = await self._avatars.prepared(avatar_name)
            peer = RTCPeerConnection(rtc_configuration(self._ice_servers))
            session = self._new_session(uuid.uuid4().hex, avatar_name, peer, avatar)
            self._registry.admit(session, ticket)
        try:
            await self._negotiate(session, offer.sdp, echo=_direction(audio) == "sendrecv")
        except asyncio.CancelledError:
            # The client went away mid-request; its session must not hold a slot forever.
            await session.close("negotiation_cancelled")
            raise
        except Exception as error:
            # aiortc reports an SDP it cannot use with assorted exception types; all of them mean a bad offer.
            logger.info("offer refused: %r", error)
            await session.close("negotiation_failed")
            raise ApiError(400, "negotiation_failed", f"the SDP offer could not be negotiated: {error}") from error
        await session.start()
        logger.info("session %s started with avatar %s", session.session_id, avatar_name)
        return SessionAnswer(
            session_id=session.session_id,
            sdp=peer.localDescription.sdp,
            type=peer.localDescription.type,
            playout_delay=session.playout_delay,
            hang_up_secret=self._access.hang_up_secret(session.session_id),
            viewer_token=self._access.viewer_token(session.session_id),
        )

    async def hang_up(self, session_id: str) -> None:
        await self._registry.get(session_id).close("hang_up")

    async def add_viewer(self, session_id: str, offer: ViewerOffer) -> ViewerAnswer:
        audio = _check_offer(offer.type, offer.sdp, microphone=False)
        session = self._registry.get(session_id)
        if session.viewer_count >= self._max_viewers:
            raise ApiError(
                503, "too_many_viewers", f"session {session_id} already has {self._max_viewers} viewers, the limit here"
            )
        viewer_id = uuid.uuid4().hex
        peer = RTCPeerConnection(rtc_configuration(self._ice_servers))
        viewer = Viewer(viewer_id, peer, session, voice=audio is not None and _direction(audio) in _RECEIVES)
        try:
            await peer.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
            if viewer.voice is not None:
                peer.addTrack(viewer.voice)
            peer.addTrack(viewer.video)
            await peer.setLocalDescription(await peer.createAnswer())
        except asyncio.CancelledError:
            await viewer.aclose()
            raise
        except Exception as error:
            # As for sessions: aiortc reports an SDP it cannot use with assorted exception types.
            logger.info("viewer offer refused: %r", error)
            await viewer.aclose()
            raise ApiError(400, "negotiation_failed", f"the SDP offer could not be negotiated: {error}") from error
        if session.closed:
            await viewer.aclose()
            raise ApiError(404, "unknown_session", f"session {session_id} ended while the viewer was joining")
        session.add_viewer(viewer_id, viewer)
        peer.on("connectionstatechange", lambda: self._on_viewer_state(session_id, viewer))
        logger.info("viewer %s joined session %s", viewer_id, session_id)
        return ViewerAnswer(viewer_id, peer.localDescription.sdp, peer.localDescription.type, session.playout_delay)

    async def remove_viewer(self, session_id: str, viewer_id: str) -> None:
        if not await self._registry.get(session_id).remove_viewer(viewer_id):
            raise ApiError(404, "unknown_viewer", f"session {session_id} has no viewer {viewer_id!r}")

    def _on_viewer_state(self, session_id: str, viewer: Viewer) -> None:
        if viewer.peer.connectionState not in ("failed", "closed"):
            return
        try:
            session = self._registry.get(session_id)
        except ApiError:
            return  # the session ended, and took its viewers with it
        departure = asyncio.create_task(session.remove_viewer(viewer.viewer_id), name=f"viewer-{viewer.viewer_id}")
        self._viewer_departures.add(departure)
        departure.add_done_callback(self._viewer_departures.discard)

    async def _negotiate(self, session: Session, sdp: str, echo: bool) -> None:
        """`echo`: the client can receive audio, so the session's echo track (if it has one) is sent back."""
        peer = session.peer
        await peer.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        transceivers = peer.getTransceivers()
        microphone = next(t for t in transceivers if t.kind == "audio")
        session.attach_microphone(microphone.receiver.track)
        if echo and session.echo_track is not None:
            peer.addTrack(session.echo_track)
        peer.addTrack(session.video_track)
        await peer.setLocalDescription(await peer.createAnswer())


def _check_offer(kind: str, sdp: str, *, microphone: bool) -> MediaDescription | None:
    """Refuse an offer the server cannot answer, with a reason; returns its audio section. `microphone`: the offer
    must send audio (a caller); otherwise audio is optional (a viewer)."""
    if kind != "offer":
        raise ApiError(400, "invalid_offer", f"expected an SDP of type 'offer', got {kind!r}")
    if len(sdp) > MAX_SDP_LENGTH:
        raise ApiError(400, "invalid_offer", f"the SDP is longer than {MAX_SDP_LENGTH} characters")
    try:
        description = SessionDescription.parse(sdp)
    except Exception as error:
        # aiortc's parser signals malformed lines with assertions and index or value errors alike.
        raise ApiError(400, "malformed_sdp", "the SDP offer could not be parsed") from error
    if not description.media:
        raise ApiError(400, "malformed_sdp", "the SDP offer has no media sections")
    _check_media_ids(description)
    audio = next((media for media in description.media if media.kind == "audio"), None)
    video = next((media for media in description.media if media.kind == "video"), None)
    if microphone and (audio is None or _direction(audio) not in _SENDS_AUDIO):
        raise ApiError(400, "no_microphone", "the offer must send a microphone track (audio, sendrecv or sendonly)")
    if video is None or _direction(video) not in _RECEIVES:
        raise ApiError(400, "no_video", "the offer must receive video (a recvonly or sendrecv video section)")
    for media in (video,) if audio is None else (audio, video):
        if not media.rtp.codecs:
            raise ApiError(400, "malformed_sdp", f"the {media.kind} section lists no codecs")
        if media.dtls is None or not media.dtls.fingerprints:
            raise ApiError(400, "malformed_sdp", f"the {media.kind} section has no DTLS fingerprint")
        if media.ice is None or media.ice.usernameFragment is None or media.ice.password is None:
            raise ApiError(400, "malformed_sdp", f"the {media.kind} section has no ICE credentials")
    return audio


def _check_media_ids(description: SessionDescription) -> None:
    """Every section needs its own `a=mid`, and a group may name only those: aiortc leaves a section it cannot
    place without a transport and then fails on it while answering and again while closing."""
    mids = [media.rtp.muxId for media in description.media]
    if not all(mids) or len(set(mids)) != len(mids):
        raise ApiError(400, "malformed_sdp", "every media section of the offer needs its own a=mid")
    for group in description.group:
        unknown = [str(item) for item in group.items if item not in mids]
        if unknown:
            raise ApiError(
                400, "malformed_sdp", f"the {group.semantic} group names media sections the offer lacks: {unknown}"
            )


def _direction(media: MediaDescription) -> str:
    """A media section without a direction attribute is sendrecv (RFC 4566)."""
    return media.direction or "sendrecv"
