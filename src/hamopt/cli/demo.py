"""``hamopt demo``: serve the local web page (playground, reversibility, results browser)."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import socket
import sys
import warnings

from ..errors import OptionError

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


def check_args(args: argparse.Namespace, *, probe: bool = False) -> None:
    """Reject a bad port or results directory before anything starts; with ``probe``, also a
    host or port the server could not bind (:func:`check_can_serve`); warn on a public host."""
    if not 1 <= args.port <= 65535:
        raise OptionError(f"--port must be in 1..65535, got {args.port}")
    if args.results is not None and not os.path.isdir(args.results):
        raise OptionError(f"--results {args.results!r} is not a directory")
    if not args.host:
        raise OptionError("--host must not be empty")
    if probe:
        check_can_serve(args.host, args.port)
    if not is_loopback(args.host):
        warnings.warn(
            f"hamopt demo: binding {args.host}, not 127.0.0.1: anyone who can reach this machine "
            f"on port "
            f"{args.port} can use the page and read the results directory",
            stacklevel=2,
        )


def check_can_serve(host: str, port: int) -> None:
    """Refuse, with an :class:`~hamopt.errors.OptionError`, a host that does not resolve or is
    not an address of this machine, and a port that is taken or needs privileges: bind a probe
    socket the way the server will (``SO_REUSEADDR``), then release it."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise OptionError(
            f"--host {host!r} does not resolve to an address ({reason}); give an IP address "
            f"of this machine or a name for one (default {LOOPBACK})"
        ) from None
    family, kind, proto, _, address = infos[0]
    probe = socket.socket(family, kind, proto)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise OptionError(
                f"--port {port} is already in use on {host}; choose another port in 1..65535 "
                "or stop the program using it"
            ) from None
        if exc.errno == errno.EACCES:
            raise OptionError(
                f"--port {port} on {host} needs privileges here; choose a port in 1024..65535"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise OptionError(
                f"--host {host!r} is not an address of this machine; give one of its addresses "
                f"(default {LOOPBACK}, or 0.0.0.0 for every interface)"
            ) from None
        raise OptionError(f"cannot serve on --host {host!r} --port {port}: {exc.strerror or exc}") from None
    finally:
        probe.close()


def _run(args: argparse.Namespace) -> int:
    check_args(args, probe=True)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        from ..web.app import build_app
    except ImportError as exc:
        raise OptionError(
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
        # Gradio's run history keeps every call's inputs and outputs (the pushed figures, ~35-110 kB
        # each) in the browser's localStorage and re-reads and rewrites the whole list several
        # times per call: tens of ms per redraw, growing with every edit
        run_history=False,
    )
    return 0
