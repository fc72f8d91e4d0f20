"""The `echolive` command line: `serve`, `render`, `doctor` and `bridge`.

Every expected failure (a missing file, a portrait without a face, unreadable audio, an unknown renderer, a
weights folder that does not match) ends with one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from server.offline_render import render_to_file
from server.settings import DEFAULT_SIZE, RENDERER_NAMES, ServerSettings, check_frame_size, default_avatar_dir

EXIT_USAGE = 2
EXIT_FAILURE = 1


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line naming the command, not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="echolive", description="EchoMimic Live: a portrait that speaks with your voice.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)

    serve = commands.add_parser("serve", help="start the real-time server and its web client")
    serve.add_argument("--host", default=ServerSettings.host, help="address to bind (default %(default)s)")
    serve.add_argument("--port", type=int, default=ServerSettings.port, help="port to bind (default %(default)s)")
    _add_renderer_arguments(serve)
    serve.add_argument(
        "--avatar", default=None, help="the portrait sessions start with: a name from the avatar list, or an image path"
    )
    serve.add_argument("--max-sessions", type=int, default=ServerSettings.max_sessions, help="admission limit")
    serve.add_argument(
        "--playout-delay",
        type=float,
        default=None,
        help="seconds between a moment of voice arriving and its frame going out (default: what the renderer needs)",
    )
    serve.add_argument(
        "--no-echo-audio", action="store_true", help="do not send the caller's voice back alongside the video"
    )
    serve.add_argument(
        "--avatar-dir", type=Path, default=default_avatar_dir(), help="where uploaded portraits are kept (%(default)s)"
    )
    serve.add_argument(
        "--max-upload-mb", type=float, default=ServerSettings.max_upload_bytes / 2**20, help="portrait upload limit"
    )
    serve.add_argument(
        "--ice-address",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="gather WebRTC host candidates only on this local address (repeatable; default: every interface "
        "but loopback). 127.0.0.1 serves this machine alone, for example through an SSH tunnel",
    )
    serve.add_argument(
        "--max-viewers", type=int, default=ServerSettings.max_viewers, help="people watching one session at once"
    )

    render = commands.add_parser("render", help="render a portrait speaking an audio file to an MP4, offline")
    render.add_argument("--image", type=Path, required=True, help="portrait (PNG or JPEG) with one frontal face")
    render.add_argument("--audio", type=Path, required=True, help="speech in any format FFmpeg reads")
    render.add_argument("-o", "--output", type=Path, required=True, help="the MP4 to write (H.264 + AAC)")
    _add_renderer_arguments(render)

    bench = commands.add_parser(
        "bench", help="run a renderer through a live session's stream in real time on a speech file and report"
    )
    bench.add_argument("--audio", type=Path, required=True, help="speech in any format FFmpeg reads")
    bench.add_argument("--image", type=Path, default=None, help="portrait (default: the bundled one)")
    _add_renderer_arguments(bench)
    bench.add_argument("--json", action="store_true", help="print the report as JSON")

    doctor = commands.add_parser("doctor", help="print what this machine can run")
    doctor.add_argument("--weights", type=Path, default=None, help="an EchoMimic v1 weights folder to check")

    bridge = commands.add_parser("bridge", help="the avatar as a virtual camera for video calls")
    bridge.add_argument("--server", default="http://127.0.0.1:8080", help="the server's URL (default %(default)s)")
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
    return parser


def _add_renderer_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--renderer", default="lite", help=f"one of {', '.join(RENDERER_NAMES)} (default lite)")
    parser.add_argument("--weights", type=Path, default=None, help="EchoMimic v1 weights folder (for echomimic)")
    parser.add_argument("--fps", type=float, default=None, help="video frame rate (default: the renderer's own)")
    parser.add_argument(
        "--size", type=int, default=DEFAULT_SIZE, help="frame side in pixels, a multiple of 8 (default %(default)s)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "render":
            return _render(args)
        if args.command == "bridge":
            return _bridge(args)
        if args.command == "bench":
            return _bench(args)
        return _doctor(args)
    except (ValueError, OSError) as error:
        print(f"echolive {args.command}: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"echolive {args.command}: interrupted", file=sys.stderr)
        return EXIT_FAILURE


def _serve(args: argparse.Namespace) -> int:
    from server.serve import run_server

    settings = ServerSettings(
        host=args.host,
        port=args.port,
        renderer=args.renderer,
        avatar=args.avatar,
        weights_dir=args.weights,
        fps=args.fps,
        size=args.size,
        max_sessions=args.max_sessions,
        playout_delay=args.playout_delay,
        echo_audio=not args.no_echo_audio,
        max_upload_bytes=round(args.max_upload_mb * 2**20),
        avatar_dir=args.avatar_dir,
        max_viewers=args.max_viewers,
        ice_host_addresses=tuple(args.ice_address),
    )
    run_server(settings)
    return 0


def _render(args: argparse.Namespace) -> int:
    frames = render_to_file(
        image=args.image,
        audio=args.audio,
        output=args.output,
        renderer_name=args.renderer,
        weights_dir=args.weights,
        fps=args.fps,
        size=args.size,
    )
    print(f"wrote {args.output} ({frames} frames)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from server.live_bench import run_bench
    from server.media_files import read_speech
    from server.renderers import create_renderer
    from streaming.lite.default_portrait import default_portrait_path, load_portrait

    check_frame_size(args.size)
    portrait = load_portrait(args.image if args.image is not None else default_portrait_path())
    speech = read_speech(args.audio)
    renderer = create_renderer(args.renderer, args.fps, args.weights, args.size)
    report = run_bench(renderer, portrait, speech)
    print(report.to_json() if args.json else report.describe())
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from server.doctor import examine, report

    print(report(examine(args.weights)))
    return 0


def _bridge(args: argparse.Namespace) -> int:
    from server.bridge import BridgeError, BridgeOptions, check_voice_delay, parse_voice_delay, run_bridge

    try:
        options = BridgeOptions(
            server=args.server,
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


if __name__ == "__main__":
    sys.exit(main())
