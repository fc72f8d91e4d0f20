"""People watching a session: each viewer is a receive-only peer connection fed from the session's clock.

A viewer is one more output of the session (`SessionCore.add_viewer`): it gets every tick and the voice from the
moment it joins, through tracks of its own, so a viewer whose connection stalls, fails or leaves delays nobody
else, and the session (a bot's, or a caller's) never notices one coming or going.
"""

from __future__ import annotations

from aiortc import RTCPeerConnection

from server.session_core import SessionCore
from server.tracks import PeerOutput


class Viewer(PeerOutput):
    def __init__(self, viewer_id: str, peer: RTCPeerConnection, session: SessionCore, *, voice: bool) -> None:
        super().__init__(session.clock, session.send_time, voice=voice, max_buffered_voice=session.max_voice_ahead)
        self.viewer_id = viewer_id
        self.peer = peer

    async def aclose(self) -> None:
        await super().aclose()
        await self.peer.close()
