"""The `echolive` command line: `serve`, `render`, `bench`, `doctor`, `flops`, `compile` and `bridge`.

Every expected failure (a missing file, a portrait without a face, unreadable audio, an unknown renderer, a
weights folder that does not match) ends with one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from server.acceleration_commands import add_compile_command, add_flops_command, run_compile, run_flops
from server.acceleration_options import AccelerationOptions, add_acceleration_options, add_channels_last_option
from server.bridge_command import add_bridge_command, run_bridge_command
from server.cluster_command import add_cluster_arguments, run_cluster_command
from server.deployment_options import DeploymentOptions, add_deployment_options
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
        "--admission-margin",
        type=float,
        default=ServerSettings.admission_margin,
        help="share of the renderer's measured capacity kept free when admitting sessions (default %(default)s)",
    )
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
        "--upload-rate",
        type=float,
        default=ServerSettings.upload_rate,
        help="portrait uploads one client address may make per minute (default %(default)s)",
    )
    serve.add_argument(
        "--avatar-cache-size",
        type=int,
        default=ServerSettings.avatar_cache_size,
        help="prepared avatars kept in memory at most (default %(default)s)",
    )
    serve.add_argument(
        "--avatar-cache-mb",
        type=float,
        default=ServerSettings.avatar_cache_bytes / 2**20,
        help="memory the kept avatars may hold, GPU memory included (default %(default)s)",
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
    serve.add_argument(
        "--media-timeout",
        type=float,
        default=ServerSettings.media_timeout,
        help="seconds without microphone audio (or without ICE connecting) after which a caller is taken as gone "
        "(default %(default)s)",
    )
    add_deployment_options(serve)
    add_cluster_arguments(serve)

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
    add_channels_last_option(doctor)

    add_flops_command(commands)
    add_compile_command(commands)
    add_bridge_command(commands)
    return parser


def _add_renderer_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--renderer", default="lite", help=f"one of {', '.join(RENDERER_NAMES)} (default lite)")
    parser.add_argument("--weights", type=Path, default=None, help="EchoMimic v1 weights folder (for echomimic)")
    parser.add_argument("--fps", type=float, default=None, help="video frame rate (default: the renderer's own)")
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help=f"frame side in pixels, a multiple of 8 (default: {DEFAULT_SIZE} for lite, the profile's for echomimic)",
    )
    add_acceleration_options(parser)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "render":
            return _render(args)
        if args.command == "bench":
            return _bench(args)
        if args.command == "flops":
            return run_flops(args)
        if args.command == "compile":
            return run_compile(args)
        if args.command == "bridge":
            return run_bridge_command(args)
        return _doctor(args)
    except (ValueError, OSError) as error:
        print(f"echolive {args.command}: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"echolive {args.command}: interrupted", file=sys.stderr)
        return EXIT_FAILURE


def _serve(args: argparse.Namespace) -> int:
    from server.serve import run_server

    deployment = DeploymentOptions.from_args(args)
    settings = ServerSettings(
        host=args.host,
        port=args.port,
        renderer=args.renderer,
        avatar=args.avatar,
        weights_dir=args.weights,
        fps=args.fps,
        size=args.size,
        acceleration=AccelerationOptions.from_args(args),
        max_sessions=args.max_sessions,
        admission_margin=args.admission_margin,
        playout_delay=args.playout_delay,
        echo_audio=not args.no_echo_audio,
        max_upload_bytes=round(args.max_upload_mb * 2**20),
        avatar_dir=args.avatar_dir,
        upload_rate=args.upload_rate,
        avatar_cache_size=args.avatar_cache_size,
        avatar_cache_bytes=round(args.avatar_cache_mb * 2**20),
        ice_host_addresses=tuple(args.ice_address),
        max_viewers=args.max_viewers,
        media_timeout=args.media_timeout,
        access=deployment.access,
        tls=deployment.tls,
        ice_servers=deployment.ice_servers,
    )
    if args.ray is not None:
        run_cluster_command(settings, args)
        return 0
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
        acceleration=AccelerationOptions.from_args(args),
    )
    print(f"wrote {args.output} ({frames} frames)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from server.live_bench import run_bench
    from server.media_files import read_speech
    from server.renderers import create_renderer
    from streaming.lite.default_portrait import default_portrait_path, load_portrait

    if args.size is not None:
        check_frame_size(args.size)
    portrait = load_portrait(args.image if args.image is not None else default_portrait_path())
    speech = read_speech(args.audio)
    renderer = create_renderer(args.renderer, args.fps, args.weights, args.size, AccelerationOptions.from_args(args))
    report = run_bench(renderer, portrait, speech)
    print(report.to_json() if args.json else report.describe())
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from server.doctor import examine, report

    print(report(examine(args.weights, args.channels_last)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
