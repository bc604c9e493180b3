"""Training runs shared by the one-process reference and the ranks of the distributed tests.

Every run trains the same float64 MLP on the same stream of global batches of ``GLOBAL_BATCH``
rows. One process trains on each whole batch; under ``torch.distributed`` rank r trains on rows
``[r·n/W, (r+1)·n/W)`` with its local mean loss, wrapped in DDP or in FSDP2 (``fully_shard``).
A run returns, per step, the full parameters and a copy of ``opt.stats``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

import hamopt

GLOBAL_BATCH = 16
STEPS = 6
IN, HIDDEN, OUT = 6, 7, 1  # FSDP2 shards of unequal length (4 + 3 rows) and empty ones (1 + 0 rows)

# name -> builder(params) of the optimiser; small steps except where a cap or a
# bounce must act within STEPS steps
OPTIMIZERS: dict[str, Callable[..., Any]] = {
    "leapfrog-exact": lambda ps: hamopt.Leapfrog(ps, lr=0.3, cap=1.01),
    "leapfrog-streaming": lambda ps: hamopt.Leapfrog(ps, lr=0.3, mode="streaming", cap=1.01),
    "leapfrog-loss-kw": lambda ps: hamopt.Leapfrog(ps, lr=0.1, mode="streaming", gamma=0.5),
    "euler-exact": lambda ps: hamopt.Euler(ps, lr=0.1, cap=None),
    "ecdsep": lambda ps: hamopt.ECDSep(ps, lr=0.05, eta=2.0, nu=0.2, deltaEn=0.5, weight_decay=1e-3, seed=11),
    "bbi": lambda ps: hamopt.BBI(ps, lr=0.02, threshold0=2, threshold=3, n_fixed_bounces=1, deltaEn=0.3, seed=12),
    "ecdq1": lambda ps: hamopt.ECDq1(ps, lr=0.05, eta=2.0, nu=0.3, projection="per_tensor", seed=13),
}

# what a reference run must show, so that the comparison covers it
MUST_HAPPEN = {
    "leapfrog-exact": lambda stats: any(s["cap_engaged"] for s in stats),
    "leapfrog-streaming": lambda stats: any(s["cap_engaged"] for s in stats),
    "ecdsep": lambda stats: all(s["bounced"] for s in stats),
    "bbi": lambda stats: any(s["bounced"] for s in stats),
    "ecdq1": lambda stats: all(s["bounced"] for s in stats),
}


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(IN, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, OUT)).to(torch.float64)


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch of ``step`` (a new one each step)."""
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(GLOBAL_BATCH, IN, generator=g, dtype=torch.float64)
    y = torch.randn(GLOBAL_BATCH, OUT, generator=g, dtype=torch.float64)
    return x, y


def local_rows(x: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    n = x.shape[0] // world
    return x[rank * n:(rank + 1) * n]


def full_parameters(model: nn.Module) -> list[torch.Tensor]:
    """Every parameter's full value (a collective for sharded parameters)."""
    out = []
    for p in model.parameters():
        t = p.detach()
        out.append((t.full_tensor() if hasattr(t, "full_tensor") else t).clone())
    return out


def train_steps(model: nn.Module, opt: Any, name: str, steps: range, rank: int = 0, world: int = 1,
                counter: Any = None) -> list[dict]:
    """Run ``steps``; return one record per step: ``{"params": [...], "stats": {...}}``. A
    ``counter`` (with ``total`` and ``in_closure`` counts of collectives) learns how many of them
    the closure made."""
    records = []
    for t in steps:
        x, y = batch(t)
        x, y = local_rows(x, rank, world), local_rows(y, rank, world)

        def closure(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
            start = counter.total if counter is not None else 0
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            if counter is not None:
                counter.in_closure += counter.total - start
            return loss

        if name == "leapfrog-loss-kw":
            loss = closure()
            opt.step(loss=loss)
        else:
            opt.step(closure)
        records.append({"params": full_parameters(model), "stats": copy.deepcopy(opt.stats)})
    return records


def reference(name: str) -> list[dict]:
    """One process, whole batches."""
    model = make_model()
    opt = OPTIMIZERS[name](list(model.parameters()))
    return train_steps(model, opt, name, range(STEPS))


def assert_same_run(got: list[dict], want: list[dict], *, rel: float = 1e-12, where: str = "") -> None:
    """Parameters and every ``stats`` value equal to ``rel`` relative at every step."""
    assert len(got) == len(want), where
    for t, (g, w) in enumerate(zip(got, want)):
        for i, (a, b) in enumerate(zip(g["params"], w["params"])):
            scale = float(b.abs().max())
            err = float((a - b).abs().max())
            assert err <= rel * scale, f"{where} step {t} parameter {i}: max difference {err:.3g} (scale {scale:.3g})"
        assert set(g["stats"]) == set(w["stats"]), where
        for key, b in w["stats"].items():
            a = g["stats"][key]
            scale = _difference_scale(key, w["stats"])
            if scale is not None and isinstance(b, float) and isinstance(a, float):
                assert abs(a - b) <= rel * scale, f"{where} step {t} stats[{key!r}]: {a!r} != {b!r} (scale {scale})"
            else:
                assert_close_value(a, b, rel, f"{where} step {t} stats[{key!r}]")


def _difference_scale(key: str, stats: dict) -> float | None:
    """A stat that is the difference of two larger numbers carries their rounding: it is compared
    relative to their size (``delta_h``: H; ``invariant_error`` and ``kick_norm_excess``: 1, they
    are ``|x − 1|``-like). None: compared relative to itself."""
    if key == "delta_h" and stats.get("hamiltonian") is not None:
        return max(abs(stats["hamiltonian"]), abs(stats.get("loss") or 0.0))
    if key in ("invariant_error", "kick_norm_excess"):
        return 1.0
    return None


def assert_close_value(a: Any, b: Any, rel: float, where: str) -> None:
    if b is None or isinstance(b, (bool, str, int)):
        assert a == b, f"{where}: {a!r} != {b!r}"
    elif isinstance(b, float):
        assert isinstance(a, float), f"{where}: {a!r} is not a float"
        assert abs(a - b) <= rel * max(abs(a), abs(b)) or a == b, f"{where}: {a!r} != {b!r}"
    elif isinstance(b, (list, tuple)):
        assert len(a) == len(b), where
        for x, y in zip(a, b):
            assert_close_value(x, y, rel, where)
    else:
        raise AssertionError(f"{where}: unexpected stats value {b!r}")


# ---------------------------------------------------------------------- measurement
TRACKED: dict[str, Callable[..., Any]] = {
    "leapfrog-exact": OPTIMIZERS["leapfrog-exact"],
    "leapfrog-streaming": OPTIMIZERS["leapfrog-streaming"],
    "ecdsep": OPTIMIZERS["ecdsep"],
    "sgd-momentum": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.05),
}

# record fields that are differences of larger numbers, and the field giving their size
_RECORD_DIFFERENCES = {"delta_h_int": "hamiltonian", "delta_h_traj": "hamiltonian", "resampling": "loss"}


def tracked_run(model: nn.Module, opt: Any, rank: int = 0, world: int = 1) -> list[dict]:
    """EnergyTracker records (as dicts) over STEPS steps."""
    from hamopt.energy import EnergyTracker

    tracker = EnergyTracker(opt)
    for t in range(STEPS):
        x, y = batch(t)
        x, y = local_rows(x, rank, world), local_rows(y, rank, world)
        tracker.step(lambda x=x, y=y: nn.functional.mse_loss(model(x), y))
    return [r.as_dict() for r in tracker.records]


def tracked_reference(name: str) -> list[dict]:
    model = make_model()
    return tracked_run(model, TRACKED[name](list(model.parameters())))


def assert_same_records(got: list[dict], want: list[dict], *, rel: float = 1e-12, where: str = "") -> None:
    assert len(got) == len(want), where
    for t, (g, w) in enumerate(zip(got, want)):
        for key, b in w.items():
            a = g[key]
            size = _RECORD_DIFFERENCES.get(key)
            if size is not None and isinstance(b, float) and w.get(size) is not None:
                assert abs(a - b) <= rel * abs(w[size]), f"{where} record {t} {key}: {a!r} != {b!r}"
            else:
                assert_close_value(a, b, rel, f"{where} record {t} {key}")


def tiny_gpt() -> nn.Module:
    from hamopt.models.gpt import GPT, GPTConfig

    # the query bias (at its mean in eval mode: no draw) breaks the rotation symmetry, so the
    # charges move away from zero
    cfg = GPTConfig(vocab_size=11, context=4, n_layer=1, n_head=2, width=8, mlp_ratio=2, activation="relu",
                    attention="bq")
    return GPT(cfg, seed=0).to(torch.float64).eval()


def noether_run(model: nn.Module, rank: int = 0, world: int = 1) -> list[dict]:
    """Charge summaries of a tiny GPT trained by streaming Leapfrog (momentum source) and by SGD
    (displacement source), STEPS // 2 steps each."""
    from hamopt.diagnostics.noether import NoetherMonitor
    from hamopt.energy import EnergyTracker

    out = []
    for build in (lambda ps: hamopt.Leapfrog(ps, lr=0.05, mode="streaming", cap=None),
                  lambda ps: torch.optim.SGD(ps, lr=0.05)):
        opt = build(list(model.parameters()))
        monitor = NoetherMonitor(model, opt)
        tracker = EnergyTracker(opt)
        for t in range(STEPS // 2):
            g = torch.Generator().manual_seed(2000 + t)
            idx = torch.randint(0, 11, (4, 4), generator=g)
            targets = torch.randint(0, 11, (4, 4), generator=g)
            idx, targets = local_rows(idx, rank, world), local_rows(targets, rank, world)
            _, charges = monitor.step(tracker, lambda idx=idx, targets=targets: model(idx, targets)[1])
            out.append(charges.summary())
    return out


def assert_same_summaries(got: list[dict], want: list[dict], *, rel: float = 1e-12, where: str = "") -> None:
    """Charges are sums of products of O(1) entries: compared relative to their scale
    (``norm / rel``, the charge fraction's denominator) rather than to themselves."""
    assert len(got) == len(want), where
    for t, (g, w) in enumerate(zip(got, want)):
        assert g["noether_source"] == w["noether_source"], where
        for kind in ("qk", "vo"):
            scale = w[f"j_{kind}_norm"] / w[f"j_{kind}_rel"] if w[f"j_{kind}_rel"] else 1.0
            assert abs(g[f"j_{kind}_norm"] - w[f"j_{kind}_norm"]) <= rel * scale, f"{where} step {t} {kind}"
            for a, b in zip(g[f"j_{kind}_head_norms"], w[f"j_{kind}_head_norms"], strict=True):
                assert abs(a - b) <= rel * scale, f"{where} step {t} {kind} head norm"
        for key in ("rescale_norm", "rescale_mean"):
            assert_close_value(g[key], w[key], 1e-10, f"{where} step {t} {key}")
