"""``hamopt sweep SPEC --out DIR``: run a spec's sweep (skipping finished runs), then analyse it.

Backends (``docs/sweeps-at-scale.md``): ``--backend local`` (default; ``--workers N`` processes)
or ``--backend ray [--address ADDR] [--cpus-per-run C] [--gpus-per-run G]``. Under
``torchrun --nproc-per-node N -m hamopt sweep ...`` each run is a DDP job over the N ranks and
rank 0 alone writes, analyses and prints.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    """``--backend``, ``--address``, ``--cpus-per-run``, ``--gpus-per-run`` (sweep, reproduce)."""
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="where the runs execute: local processes (--workers) or Ray tasks "
                   "(needs hamopt[ray]) (default: %(default)s)")
    p.add_argument("--address", default=None,
                   help="with --backend ray: a running Ray cluster to use (auto, HOST:PORT or "
                   "ray://HOST:PORT; default: start a local instance for this sweep)")
    p.add_argument("--cpus-per-run", type=float, default=None,
                   help="with --backend ray: CPUs each run's task asks for (default: the spec's "
                   "threads, else 1)")
    p.add_argument("--gpus-per-run", type=float, default=None,
                   help="with --backend ray: GPUs each run's task asks for (default: 1 on a CUDA "
                   "device, else 0)")


def backend_options(args: argparse.Namespace) -> Any:
    """The sweep backend the arguments ask for: None (local) or a ``RayOptions``; refuses the
    Ray options with the local backend and ``--backend ray`` under torchrun."""
    from ..errors import OptionError

    if args.backend == "local":
        given = [f"--{n.replace('_', '-')}" for n in ("address", "cpus_per_run", "gpus_per_run")
                 if getattr(args, n) is not None]
        if given:
            raise OptionError(f"{', '.join(given)}: only used with --backend ray (the backend "
                              "is local)")
        return None
    from ..experiments.ddp import launched_by_torchrun
    from ..experiments.ray_backend import RayOptions, require_ray

    if launched_by_torchrun():
        raise OptionError("--backend ray cannot run under torchrun; use --backend local")
    if args.workers is not None and args.workers > 1:
        raise OptionError("--workers applies to --backend local; with --backend ray use "
                          "--cpus-per-run/--gpus-per-run")
    options = RayOptions(address=args.address, cpus_per_run=args.cpus_per_run,
                         gpus_per_run=args.gpus_per_run)
    require_ray()
    return options


def is_writer() -> bool:
    """False on the ranks other than 0 of a torchrun job (they neither analyse nor print)."""
    from ..experiments import ddp

    job = ddp.current()
    return job is None or job.is_writer


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run the runs of a YAML experiment spec into DIR (resumable)")
    p.add_argument("spec", help="YAML experiment spec (see docs/lab.md)")
    p.add_argument(
        "--out", required=True, help="results directory (created; rerunning skips finished runs)"
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    p.add_argument("--workers", type=int, default=None,
                   help="runs in parallel processes (1..64; default: the spec's, 1 unless set)")
    add_backend_arguments(p)
    from ._lab import add_replicas_argument

    add_replicas_argument(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--report", action="store_true", help="also write report.html and the figures")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ._lab import guarded

    return guarded("sweep", lambda: _sweep(args))


def _sweep(args: argparse.Namespace) -> int:
    from ..errors import OptionError
    from ..experiments.analysis import analyse, write_analysis
    from ..experiments.catalog import build_catalog
    from ..experiments.runner import run_sweep
    from ..experiments.spec import load_spec
    from ..experiments.spec_load import check_runnable
    from ._lab import print_summary, print_table, replicas_option, with_replicas

    if args.threads is not None and not 1 <= args.threads <= 1024:
        raise OptionError(f"--threads must be in 1..1024, got {args.threads}")
    if args.workers is not None and not 1 <= args.workers <= 64:
        raise OptionError(f"--workers must be in 1..64, got {args.workers}")
    replicas_option(args.replicas)
    backend = backend_options(args)
    spec = with_replicas(load_spec(args.spec), args.replicas)
    if args.threads is not None:
        spec = spec.model_copy(update={"threads": args.threads})
    if args.workers is not None:
        spec = spec.model_copy(update={"workers": args.workers})
    check_runnable(spec, source=args.spec)  # device and data present: refused before --out is made
    summary = run_sweep(spec, args.out, progress=not args.no_progress, backend=backend)
    if not is_writer():
        return 0
    print_summary(summary)
    if args.report:
        from ..report import write_report

        files = write_report(args.out)
        print(f"report: {files.html}")
    else:
        write_analysis(args.out, analyse(args.out))
        build_catalog(args.out)
    print_table(f"{args.out}/table.csv")
    return 1 if summary.failed else 0
