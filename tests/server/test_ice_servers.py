"""ICE servers: parsed and checked once (command line or JSON file), given to every server-side peer connection and
handed to the page. No STUN or TURN server is contacted: the peer connections record the configuration they were
given and gather on loopback only."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

import server.signalling
from server.cli import build_parser, main
from server.deployment_options import DeploymentOptions
from server.ice_servers import IceServer, load_ice_servers
from server.settings import ServerSettings
from tests.server.conftest import serving
from tests.server.loopback_call import LoopbackCall

STUN = "stun:stun.example.org:3478"
TURN = "turn:turn.example.org?transport=tcp"


def parsed(*arguments: str) -> tuple[IceServer, ...]:
    return DeploymentOptions.from_args(build_parser().parse_args(["serve", *arguments])).ice_servers


def test_the_command_line_gives_stun_and_turn_servers_with_credentials_for_turn_only() -> None:
    servers = parsed("--ice-server", STUN, "--ice-server", TURN, "--turn-username", "u", "--turn-credential", "p")
    assert servers == (IceServer((STUN,)), IceServer((TURN,), "u", "p"))


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["--ice-server", "http://stun.example.org"], "is not an ICE server URL"),
        (["--ice-server", "stun:"], "is not an ICE server URL"),
        (["--ice-server", "turn:turn.example.org"], "needs a username and a credential"),
        (["--ice-server", STUN, "--ice-config", "ice.json"], "not both"),
    ],
)
def test_a_bad_ice_server_is_one_clear_line(
    arguments: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", *arguments]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and complaint in error


def test_an_ice_config_file_in_the_browser_shape(tmp_path: Path) -> None:
    path = tmp_path / "ice.json"
    path.write_text(
        json.dumps(
            [{"urls": STUN}, {"urls": [TURN, "turns:turn.example.org:5349"], "username": "u", "credential": "p"}]
        )
    )
    assert load_ice_servers(path) == (IceServer((STUN,)), IceServer((TURN, "turns:turn.example.org:5349"), "u", "p"))
    for broken, complaint in [
        ("{", "cannot read"),
        ('{"urls": "stun:x"}', "JSON list"),
        ('[{"url": "stun:x"}]', "ICE server 1 must be an object with 'urls'"),
        ('[{"urls": "turn:x", "username": "u"}]', "ICE server 1: the TURN server turn:x needs"),
        ('[{"urls": "stun:x", "username": 5}]', "must be strings"),
    ]:
        path.write_text(broken)
        with pytest.raises(ValueError, match=complaint):
            load_ice_servers(path)


async def test_sessions_and_viewers_are_made_with_the_servers_and_the_page_gets_them(
    settings: ServerSettings, speech: npt.NDArray[np.float32], monkeypatch: pytest.MonkeyPatch
) -> None:
    configurations: list[RTCConfiguration] = []

    class RecordingPeerConnection(RTCPeerConnection):  # type: ignore[misc]
        def __init__(self, configuration: RTCConfiguration) -> None:
            configurations.append(configuration)
            super().__init__(RTCConfiguration(iceServers=[]))  # recorded, not used: nothing is contacted

    monkeypatch.setattr(server.signalling, "RTCPeerConnection", RecordingPeerConnection)
    servers = (IceServer((STUN,)), IceServer((TURN,), "u", "p"))
    async with serving(replace(settings, ice_servers=servers)) as http:
        config = (await http.get("/api/config")).json()
        assert config["ice_servers"] == [{"urls": [STUN]}, {"urls": [TURN], "username": "u", "credential": "p"}]
        assert 1 <= config["ice_gathering_timeout"] <= 10
        caller, viewer = LoopbackCall(http, speech), LoopbackCall(http, speech)
        try:
            assert (await caller.start()).status_code == 201
            assert caller.session_id is not None
            assert (await viewer.watch(caller.session_id)).status_code == 201
        finally:
            await viewer.close()
            await caller.close()
    assert len(configurations) == 2
    for configuration in configurations:
        given = [(ice.urls, ice.username, ice.credential) for ice in configuration.iceServers or []]
        assert given == [([STUN], None, None), ([TURN], "u", "p")]
