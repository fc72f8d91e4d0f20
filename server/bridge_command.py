"""`echolive bridge` on the command line: its options, and running it with one line on stderr for what fails.

The bridge itself (`server.bridge`: aiortc, PyAV, the optional pyvirtualcam) is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EXIT_FAILURE = 1


def add_bridge_command(commands: argparse._SubParsersAction[Any]) -> None:
    bridge = commands.add_parser("bridge", help="the avatar as a virtual camera for video calls")
    bridge.add_argument("--server", default="http://127.0.0.1:8080", help="the server's URL (default %(default)s)")
    bridge.add_argument("--token", default=None, help="the server's access token (default: $ECHOLIVE_TOKEN)")
    bridge.add_argument("--avatar", default=None, help="an avatar name (default: the server's)")
    bridge.add_argument("--mic", default="default", help="a capture device, or an audio file played as the microphone")
    output = bridge.add_mutually_exclusive_group()
    output.add_argument("--camera", default=None, help="the virtual camera device, e.g. /dev/video10 (default: any)")
    output.add_argument("--sink", type=Path, default=None, help="write video and voice to this MP4 instead")
    bridge.add_argument("--speaker", default=None, help="an output device to play the voice into (Linux: ALSA)")
    bridge.add_argument(
        "--voice-delay",
        default="auto",
        help="auto (the server's echo, in step with the video) or SECONDS after the mic",
    )
    bridge.add_argument(
        "--extra-voice-delay", type=float, default=0.0, help="SECONDS more for the voice either way (default 0)"
    )
    bridge.add_argument("--duration", type=float, default=None, help="stop after this many seconds")


def run_bridge_command(args: argparse.Namespace) -> int:
    from server.access_settings import token_from_environment
    from server.bridge import BridgeError, BridgeOptions, check_voice_delay, parse_voice_delay, run_bridge

    try:
        options = BridgeOptions(
            server=args.server,
            token=args.token or token_from_environment(),
            avatar=args.avatar,
            mic=args.mic,
            camera=args.camera,
            sink=args.sink,
            speaker=args.speaker,
            voice_delay=parse_voice_delay(args.voice_delay),
            extra_voice_delay=check_voice_delay("--extra-voice-delay", args.extra_voice_delay),
            duration=args.duration,
        )
        return run_bridge(options)
    except BridgeError as error:
        print(f"echolive bridge: {error}", file=sys.stderr)
        return EXIT_FAILURE
