"""``hamopt reproduce [--preset NAME] --out DIR``: a preset study end to end, then its report.

Drift presets (``quick``, ``cpu``, ``paper``) run the reference study's protocol; symbreak presets
(``symbreak-tiny``, ``symbreak-124m``) run the symmetry-breaking study; hybrid presets
(``hybrid-quick``, ``hybrid-cpu``) compare Hybrid schedules with single optimisers. All run on the
lab's one engine and honour every flag: ``--print-spec`` (no ``--out`` needed), ``--device``,
``--data-root``, ``--threads``, ``--workers``, ``--no-progress``, and the backend options of
``hamopt sweep`` (``--backend ray``, ``--address``, ``--cpus-per-run``, ``--gpus-per-run``).
Under ``torchrun --nproc-per-node N -m hamopt reproduce ...`` each run of a drift preset is a DDP
job over the N ranks (rank 0 writes the results and the report).
"""

from __future__ import annotations

import argparse

from .sweep import add_backend_arguments, backend_options, is_writer

DRIFT_PRESETS = ("quick", "cpu", "paper", "stability-quick")
SYMBREAK_PRESETS = ("symbreak-tiny", "symbreak-cpu", "symbreak-124m")
HYBRID_PRESETS = ("hybrid-quick", "hybrid-cpu")
DEFAULT_PRESET = "quick"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="run a preset study and write its report")
    p.add_argument(
        "--preset", choices=DRIFT_PRESETS + SYMBREAK_PRESETS + HYBRID_PRESETS, default=DEFAULT_PRESET,
        help="quick: digits/MLP ~1 min; cpu: CIFAR-10 subset/ResNet ~10 min; paper: ResNet-18, "
        "GPU; stability-quick: the stability monitor on digits/MLP; symbreak-tiny: GPT attention "
        "symmetry study, CPU, short; symbreak-cpu: the same with SOAP, tuned per optimiser, long "
        "enough to test the claim, CPU; symbreak-124m: the same on a GPU "
        "(--data-root = token shards); hybrid-quick / hybrid-cpu: Hybrid schedules vs single "
        "optimisers at equal gradient evaluations, digits / CIFAR-10 subset (default: %(default)s)",
    )
    p.add_argument("--out", default=None,
                   help="results directory (required unless --print-spec; rerunning skips "
                   "finished runs)")
    p.add_argument("--device", default=None, help="override the preset's device (cpu, cuda, cuda:N)")
    p.add_argument("--data-root", default=None,
                   help="data location: CIFAR-10 (npz file or directory) for drift presets, a "
                   "directory of uint16 token shards for symbreak-124m")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per process (1..1024; default: the preset's)")
    p.add_argument("--workers", type=int, default=None,
                   help="runs in parallel processes (1..64; default: the preset's, 1 unless set)")
    add_backend_arguments(p)
    from ._lab import add_replicas_argument

    add_replicas_argument(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-spec", action="store_true", help="print the preset's YAML and exit")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ._lab import guarded

    return guarded("reproduce", lambda: _reproduce(args))


def _check_counts(args: argparse.Namespace) -> None:
    from ..experiments.spec import SpecError

    if args.threads is not None and not 1 <= args.threads <= 1024:
        raise SpecError(f"--threads must be in 1..1024, got {args.threads}")
    if args.workers is not None and not 1 <= args.workers <= 64:
        raise SpecError(f"--workers must be in 1..64, got {args.workers}")
    from ._lab import replicas_option

    replicas_option(getattr(args, "replicas", None))


def _reproduce(args: argparse.Namespace) -> int:
    from ..experiments.spec import SpecError

    _check_counts(args)
    if args.replicas is not None and args.preset in (*SYMBREAK_PRESETS, *HYBRID_PRESETS):
        raise SpecError(f"--replicas applies to the drift presets; preset {args.preset!r} runs its own study")
    backend = None if args.print_spec else backend_options(args)
    if args.preset in SYMBREAK_PRESETS:
        from ..experiments.engine import sweep_backend
        from .symbreak import print_symbreak_spec, run_symbreak

        if args.print_spec:
            return print_symbreak_spec(args.preset)
        if args.out is None:
            raise SpecError("--out is required (a results directory), unless --print-spec")
        with sweep_backend(backend):
            return run_symbreak(args.preset, args.out, data=args.data_root, device=args.device,
                                threads=args.threads, workers=args.workers,
                                progress=not args.no_progress)
    if args.preset in HYBRID_PRESETS:
        from .hybrid import reproduce_hybrid

        return reproduce_hybrid(args)
    from ..experiments.presets import load_preset, preset_text

    if args.print_spec:
        print(preset_text(args.preset))
        return 0
    if args.out is None:
        raise SpecError("--out is required (a results directory), unless --print-spec")
    from ._lab import with_replicas

    spec = with_replicas(load_preset(args.preset, device=args.device, threads=args.threads, workers=args.workers,
                                     data_root=args.data_root), args.replicas)
    if spec.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SpecError(f"preset {args.preset!r} runs on {spec.device!r} but CUDA is not available "
                            "here; pass --device cpu to run it on the CPU (slow for 'paper')")
    from ..experiments.spec_load import check_runnable

    check_runnable(spec, source=f"preset {args.preset!r}")  # other devices, dtype, data: before any write
    return _run_drift(spec, args.out, progress=not args.no_progress, backend=backend)


def _run_drift(spec: object, out: str, *, progress: bool, backend: object = None) -> int:
    from ..experiments.runner import run_sweep
    from ..report import write_report
    from ._lab import print_summary, print_table

    summary = run_sweep(spec, out, progress=progress, backend=backend)
    if not is_writer():
        return 0
    print_summary(summary)
    files = write_report(out)
    print_table(files.table)
    print(f"claims: {files.verdict_counts}")
    print(f"report: {files.html}")
    return 1 if summary.failed else 0
