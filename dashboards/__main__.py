"""python -m dashboards --results DIR [--port 5006] [--address 127.0.0.1] [--show]"""
from __future__ import annotations

from core.log import add_verbosity_flags, setup_logging
from dashboards.options import build_parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    parser.add_argument("--port", type=int, default=5006)
    parser.add_argument("--address", default="127.0.0.1", help="interface to listen on (default: this machine only)")
    parser.add_argument("--show", action="store_true", help="open a browser tab")
    args = add_verbosity_flags(parser).parse_args(argv)
    setup_logging(args)
    import panel as pn

    from dashboards.app import create_app

    pn.serve(lambda: create_app(args.results, args.refresh), address=args.address, port=args.port,
             show=args.show, title="dermablate", websocket_origin=[f"{args.address}:{args.port}",
                                                                  f"localhost:{args.port}"])


if __name__ == "__main__":
    main()
