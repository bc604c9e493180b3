"""The optimiser configurations, tiny problems and helpers of the conformance and fail-safe tests.

Every configuration is built through the public constructors. The ECD configurations use their
random bounce (``nu > 0`` or short bounce thresholds), so the generator state is part of every
comparison.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

import hamopt

Factory = Callable[..., torch.optim.Optimizer]

# name -> factory(params, **overrides); small steps so that a few steps stay well behaved.
FACTORIES: dict[str, Factory] = {
    "leapfrog-exact": lambda params, **kw: hamopt.Leapfrog(params, **{"lr": 0.05, "mode": "exact", **kw}),
    "leapfrog-streaming": lambda params, **kw: hamopt.Leapfrog(params, **{"lr": 0.05, "mode": "streaming", **kw}),
    "euler-exact": lambda params, **kw: hamopt.Euler(params, **{"lr": 0.05, "mode": "exact", **kw}),
    "euler-streaming": lambda params, **kw: hamopt.Euler(params, **{"lr": 0.05, "mode": "streaming", **kw}),
    "ecdsep": lambda params, **kw: hamopt.ECDSep(params, **{"lr": 0.05, "eta": 2.0, "nu": 0.01, "seed": 3, **kw}),
    "bbi": lambda params, **kw: hamopt.BBI(
        params, **{"lr": 0.05, "threshold0": 2, "threshold": 3, "n_fixed_bounces": 2, "seed": 3, **kw}
    ),
    "ecdq1": lambda params, **kw: hamopt.ECDq1(params, **{"lr": 0.05, "eta": 2.0, "nu": 0.1, "seed": 3, **kw}),
}
NAMES = list(FACTORIES)
EXACT = ["leapfrog-exact", "euler-exact"]
STREAMING = ["leapfrog-streaming", "euler-streaming"]
HAMILTONIAN = EXACT + STREAMING
ECD = ["ecdsep", "bbi", "ecdq1"]
CLOSURE_REQUIRED = EXACT + ECD

# One optimiser-wide option per configuration and a value that differs from the first group's.
CONFLICTING_GLOBAL_OPTION: dict[str, tuple[str, Any]] = {
    "leapfrog-exact": ("cap", 3.0),
    "leapfrog-streaming": ("cap", 3.0),
    "euler-exact": ("cap", 3.0),
    "euler-streaming": ("cap", 3.0),
    "ecdsep": ("eta", 5.0),
    "bbi": ("v0", -1.0),
    "ecdq1": ("eta", 5.0),
}


def make(name: str, params: Any, **overrides: Any) -> torch.optim.Optimizer:
    return FACTORIES[name](params, **overrides)


class TinyNet(nn.Module):
    """``Linear(4, 5) → tanh → Linear(5, 3)`` with a fixed batch; the loss is a positive
    cross-entropy (every ECD potential here needs ``L > 0``)."""

    def __init__(self, dtype: torch.dtype = torch.float64, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.fc1 = nn.Linear(4, 5)
        self.fc2 = nn.Linear(5, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        self.to(dtype)
        self.register_buffer("x", torch.randn(16, 4, generator=gen).to(dtype))
        self.register_buffer("y", torch.randint(0, 3, (16,), generator=gen))

    def loss(self) -> torch.Tensor:
        logits = self.fc2(torch.tanh(self.fc1(self.x)))
        return nn.functional.cross_entropy(logits.float(), self.y)


def closure_for(opt: torch.optim.Optimizer, loss_fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        return loss

    return closure


def run(opt: torch.optim.Optimizer, loss_fn: Callable[[], torch.Tensor], steps: int) -> list[float]:
    """``steps`` closure steps; the losses they return."""
    closure = closure_for(opt, loss_fn)
    return [float(opt.step(closure).detach()) for _ in range(steps)]


def build(name: str, dtype: torch.dtype = torch.float64, seed: int = 0, **overrides: Any):
    """A fresh ``(model, optimiser)`` pair."""
    model = TinyNet(dtype=dtype, seed=seed)
    return model, make(name, model.parameters(), **overrides)


def momentum_tensors(opt: torch.optim.Optimizer, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Every tensor of the per-parameter state, parameter by parameter, key by key."""
    out = []
    for p in params:
        st = opt.state.get(p, {})
        out.extend(v for _, v in sorted(st.items()) if isinstance(v, torch.Tensor))
    return out


def snapshot(model: nn.Module, opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    """Clones of the parameters and of every per-parameter state tensor."""
    params = list(model.parameters())
    return [t.detach().clone() for t in params + momentum_tensors(opt, params)]


def assert_same_tensors(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    """Bit-for-bit equality (NaN payloads aside), shapes and dtypes included."""
    assert len(a) == len(b), f"{len(a)} tensors against {len(b)}"
    for i, (x, y) in enumerate(zip(a, b)):
        assert x.shape == y.shape and x.dtype == y.dtype, f"tensor {i}: {x.shape}/{x.dtype} vs {y.shape}/{y.dtype}"
        assert torch.equal(x, y), f"tensor {i} differs: max |Δ| = {(x.double() - y.double()).abs().max().item():.3g}"


def global_state(opt: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimiser-wide scalars (``step``, ``H0``, ...) through the public accessor."""
    return opt.global_state


def step_count(opt: torch.optim.Optimizer) -> int:
    return int(global_state(opt)["step"])


def save_load(obj: Any) -> Any:
    """``torch.save`` then ``torch.load(weights_only=True)``."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def twin(model: nn.Module, opt: torch.optim.Optimizer):
    """A deep copy of the pair (the copy's optimiser refers to the copy's parameters)."""
    pair = copy.deepcopy({"model": model, "opt": opt})
    return pair["model"], pair["opt"]


@contextlib.contextmanager
def swap_params_on_conversion() -> Iterator[None]:
    """``Module.to_empty`` keeps the parameter objects (their contents are swapped), so an
    optimiser built on ``meta`` parameters sees the materialised ones."""
    previous = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        yield
    finally:
        torch.__future__.set_swap_module_params_on_conversion(previous)
