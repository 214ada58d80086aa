"""python -m dashboards --results DIR [--port 5006] [--address 127.0.0.1] [--allow-websocket-origin HOST:PORT] [--show]

A browser's page talks to the server over a websocket, which Bokeh accepts only from the origins
it allows: this address and localhost at the port, and each --allow-websocket-origin. From
another machine, name the host and port its browser uses (`--address 0.0.0.0
--allow-websocket-origin gpu-box:5006`), or forward the port over SSH and keep the default.
"""
from __future__ import annotations

from core.log import add_verbosity_flags, setup_logging
from dashboards.options import build_parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    parser.add_argument("--port", type=int, default=5006)
    parser.add_argument("--address", default="127.0.0.1", help="interface to listen on (default: this machine only)")
    parser.add_argument("--allow-websocket-origin", action="append", default=[], metavar="HOST[:PORT]",
                        help="also accept the page's websocket from this origin (repeatable): the host and port a "
                             "remote browser opens, e.g. gpu-box:5006")
    parser.add_argument("--show", action="store_true", help="open a browser tab")
    args = add_verbosity_flags(parser).parse_args(argv)
    setup_logging(args)
    import panel as pn

    from dashboards.app import create_app

    pn.serve(lambda: create_app(args.results, args.refresh), address=args.address, port=args.port,
             show=args.show, title="dermablate",
             websocket_origin=[f"{args.address}:{args.port}", f"localhost:{args.port}", *args.allow_websocket_origin])


if __name__ == "__main__":
    main()
