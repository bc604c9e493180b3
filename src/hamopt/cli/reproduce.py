"""``hamopt reproduce --preset quick|cpu|paper --out DIR``: the study's protocol end to end, then the report."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="run a preset of the reference study's protocol and write its report")
    p.add_argument("--preset", choices=("quick", "cpu", "paper", "symbreak-tiny", "symbreak-124m"), default="quick",
                   help="quick: digits/MLP ~1 min; cpu: CIFAR-10 subset/ResNet ~10 min; paper: ResNet-18, GPU")
    p.add_argument("--out", required=True, help="results directory (rerunning skips finished runs)")
    p.add_argument("--device", default=None, help="override the preset's device (cpu, cuda, cuda:N)")
    p.add_argument("--data-root", default=None, help="CIFAR-10 location (npz file or directory)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--workers", type=int, default=None,
                   help="runs in parallel processes (1..64; default: the spec's, 1 unless set)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-spec", action="store_true", help="print the preset's YAML and exit")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ._lab import guarded

    return guarded("reproduce", lambda: _reproduce(args))


def _reproduce(args: argparse.Namespace) -> int:
    if args.preset.startswith("symbreak-"):  # GPT attention study: hamopt.experiments.symbreak
        from .symbreak import run_symbreak

        return run_symbreak(args.preset, args.out, data=args.data_root, device=args.device)
    from ..experiments.presets import load_preset, preset_text
    from ..experiments.runner import run_sweep
    from ..experiments.spec import SpecError
    from ..report import write_report
    from ._lab import print_summary, print_table

    if args.print_spec:
        print(preset_text(args.preset))
        return 0
    if args.threads is not None and not 1 <= args.threads <= 1024:
        raise SpecError(f"--threads must be in 1..1024, got {args.threads}")
    if args.workers is not None and not 1 <= args.workers <= 64:
        raise SpecError(f"--workers must be in 1..64, got {args.workers}")
    spec = load_preset(args.preset, device=args.device, threads=args.threads, workers=args.workers,
                       data_root=args.data_root)
    if spec.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SpecError(f"preset {args.preset!r} runs on {spec.device!r} but CUDA is not available here; "
                            "pass --device cpu to run it on the CPU (slow for 'paper')")
    summary = run_sweep(spec, args.out, progress=not args.no_progress)
    print_summary(summary)
    files = write_report(args.out)
    print_table(files.table)
    verdicts = [c.verdict for c in files.claims]
    print(f"claims: {verdicts.count('held')} held, {verdicts.count('did not hold')} did not hold, "
          f"{verdicts.count('not tested')} not tested")
    print(f"report: {files.html}")
    return 1 if summary.failed else 0
