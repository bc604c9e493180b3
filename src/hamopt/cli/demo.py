"""``hamopt demo``: serve the local web page (playground, reversibility, results browser)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import warnings

LOOPBACK = "127.0.0.1"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="serve an interactive page: optimiser playground, reversibility, lab results browser",
        description="Serve the hamopt demo page on http://HOST:PORT (needs the 'demo' extra: "
        "pip install 'hamopt[demo]').",
    )
    p.add_argument(
        "--host", default=LOOPBACK, help="interface to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=7860, help="TCP port, 1..65535 (default 7860)")
    p.add_argument(
        "--results",
        default=None,
        metavar="DIR",
        help="lab results directory to browse; the page reads nothing outside it",
    )
    p.set_defaults(func=_run)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_args(args: argparse.Namespace) -> None:
    """Reject a bad port or results directory before anything starts; warn on a public host."""
    if not 1 <= args.port <= 65535:
        raise SystemExit(f"hamopt demo: --port must be in 1..65535, got {args.port}")
    if args.results is not None and not os.path.isdir(args.results):
        raise SystemExit(f"hamopt demo: --results {args.results!r} is not a directory")
    if not args.host:
        raise SystemExit("hamopt demo: --host must not be empty")
    if not is_loopback(args.host):
        warnings.warn(
            f"hamopt demo: binding {args.host}, not 127.0.0.1: anyone who can reach this machine "
            f"on port "
            f"{args.port} can use the page and read the results directory",
            stacklevel=2,
        )


def _run(args: argparse.Namespace) -> int:
    check_args(args)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        from ..web.app import build_app
    except ImportError as exc:
        raise SystemExit(
            f"hamopt demo needs the 'demo' extra (pip install 'hamopt[demo]'): {exc}"
        ) from None
    app = build_app(args.results)
    print(f"hamopt demo: serving on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    app.queue(default_concurrency_limit=2).launch(
        server_name=args.host,
        server_port=args.port,
        share=False,
        inbrowser=False,
        show_error=True,
        quiet=True,
    )
    return 0
