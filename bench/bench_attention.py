"""Training-step time of symmetry-broken attention relative to the symmetric model.

One step = draw the batch's attention biases, forward, backward, AdamW step (the biases add two
vector additions per layer before ``scaled_dot_product_attention``). The variants run in
interleaved rounds (``bench.common.interleaved_times``) so machine-load drift hits them alike;
the script prints the median step time of each variant and the ratio to ``symmetric``
(target for ``bq+bv``: ≤ 1.05).

    python bench/bench_attention.py                       # tiny preset, CPU
    python bench/bench_attention.py --preset 124m --device cuda --batch 8
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_times  # noqa: E402

from hamopt.models.gpt import build_gpt  # noqa: E402


def make_step(variant: str, args: argparse.Namespace):
    model = build_gpt(args.preset, attention=variant, seed=0).to(args.device)
    ctx = args.context or model.config.context
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, model.config.vocab_size, (args.batch, ctx), generator=g).to(args.device)
    cuda = args.device.startswith("cuda")

    def step() -> None:
        biases = model.draw_biases()
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda and args.bf16):
            _, loss = model(x, x, biases=biases)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()

    return step


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny", choices=("tiny", "124m"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument(
        "--context", type=int, default=None, help="sequence length (default: the preset's context)"
    )
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--bf16", action="store_true", help="CUDA: bfloat16 autocast")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = {v: make_step(v, args) for v in ("symmetric", "bq", "bq+bv")}
    times = interleaved_times(steps, rounds=args.rounds, warmup=3)
    base = times["symmetric"]
    result = {
        "preset": args.preset,
        "device": args.device,
        "batch": args.batch,
        "context": args.context,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "rounds": args.rounds,
        "median_s": times,
        "ratio_to_symmetric": {k: v / base for k, v in times.items()},
    }
    for k, v in times.items():
        print(f"{k:<10} {1000 * v:9.2f} ms/step   ratio {v / base:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
