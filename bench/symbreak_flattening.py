"""How far is a symbreak-cpu run from a flat validation loss? One run, its validation curve.

Trains one (optimiser, variant) of the ``symbreak-cpu`` preset at a given step size for a given
number of steps, optionally with another width or a step-size schedule, and prints the
validation loss every ``--eval-every`` steps, the drop over the last 20 % of the steps and the
time per step. Used to choose the preset's length (see docs/symbreak.md, "Has the validation
loss flattened?")::

    OMP_NUM_THREADS=1 python bench/symbreak_flattening.py --optimizer adamw --lr 3e-3 --steps 2000
    OMP_NUM_THREADS=1 python bench/symbreak_flattening.py --optimizer ecdq1 --lr 1 --steps 4000 --width 32
    OMP_NUM_THREADS=1 python bench/symbreak_flattening.py --optimizer adamw --lr 1e-2 --steps 2000 \\
        --schedule cosine
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from hamopt.experiments.symbreak import RunConfig, execute_run
from hamopt.experiments.symbreak_preset import PRESETS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--optimizer", default="adamw", choices=sorted(PRESETS["symbreak-cpu"].types))
    p.add_argument("--variant", default="bq+bv", choices=("symmetric", "bq+bv"))
    p.add_argument("--lr", type=float, required=True, help="the step size")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--width", type=int, default=None, help="model width (default: the preset's)")
    p.add_argument("--schedule", default=None, choices=("cosine", "linear"),
                   help="warm-up 5 %% then decay to 2 %% of lr (default: constant)")
    p.add_argument("--seed", type=int, default=100, help="the preset's tuning seed by default")
    p.add_argument("--eval-every", type=int, default=100)
    args = p.parse_args()
    torch.set_num_threads(1)
    base = PRESETS["symbreak-cpu"]
    overrides = dict(base.model_overrides)
    if args.width is not None:
        overrides["width"] = args.width
    schedule = None if args.schedule is None else {"warmup": 0.05, "shape": args.schedule, "final": 0.02}
    preset = dataclasses.replace(base, steps=args.steps, eval_every=args.eval_every,
                                 model_overrides=overrides, schedule=schedule, track_energy=False)
    hyper = dict(base.hyper[args.optimizer], lr=args.lr)
    cfg = RunConfig(run_id="probe", preset=preset.name, optimizer=args.optimizer,
                    variant=args.variant, seed=args.seed, hyper=hyper)
    t0 = time.perf_counter()
    rows, man = execute_run(cfg, preset)
    wall = time.perf_counter() - t0
    curve = [(s, v) for s, v in zip(rows["step"], rows["val_loss"]) if v is not None]
    final = man["final_val_loss"]
    before = [v for s, v in curve if s <= 0.8 * args.steps]
    print(json.dumps({
        "optimizer": args.optimizer, "variant": args.variant, "lr": args.lr, "steps": args.steps,
        "width": overrides["width"], "parameters": man["parameters"], "schedule": schedule,
        "status": man["status"], "ms_per_step": round(1000 * wall / args.steps, 1),
        "final_val_loss": final, "drop_last_20_percent": None if not before else before[-1] - final,
        "curve": [(s, round(v, 4)) for s, v in curve],
    }))


if __name__ == "__main__":
    main()
