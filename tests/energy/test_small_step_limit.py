"""Small-step, near-frictionless limit on a quadratic: under every registered momentum convention
H = K + L is constant to first order in the Hamiltonian time step h.

Each optimiser is set up as the same damped symplectic-Euler reading of
``H = ½ pᵀ D⁻¹ p + ½ θᵀ A θ`` with time step h and friction ``γ = 1e-4`` (so ``e^{−γh}`` is the
buffer's decay): SGD with momentum μ and dampening d gets ``lr = h²/(1−d)``, ``μ = e^{−γh}``, Adam
gets ``lr = h²/(1−β1)``, ``β1 = e^{−γh}``, and every optimiser starts from the same (θ_0, p_0),
written into its state through ``p = −c·buffer`` with the convention's ``c``. Adam's second moment
is preset to ``D²`` with ``β2 = 1 − 1e-9`` so that its metric stays fixed.

Per step the loss moves by O(h) (p = O(1)) while a first-order integrator's energy error is O(h²),
so ``median |ΔH_t| / |ΔL_t|`` is O(h): it halves when h halves (Leapfrog, second order: quarters).
With Adam's earlier ``K = ½·lr·Σ m̂²/(√v̂+ε)`` (too small by 1−β1) and dampened SGD's earlier
``K = ½·lr·‖b‖²`` (too small by 1−d) the ratio does not shrink: H just follows L.
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch

import hamopt
from hamopt.energy import kinetic
from hamopt.energy.conventions import adam_momentum_coefficient, sgd_momentum_coefficient

DIM = 6
STIFFNESS = torch.linspace(0.5, 2.0, DIM, dtype=torch.float64)
ADAM_METRIC = torch.linspace(2.0, 0.5, DIM, dtype=torch.float64)  # D = √v̂ + ε
EPS = 1e-8
GAMMA = 1e-4
DURATION = 4.0  # physical time h · steps
COARSE, FINE = 0.04, 0.02


def quadratic(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (STIFFNESS * x * x).sum()


def start() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randn(DIM, generator=g, dtype=torch.float64),
            torch.randn(DIM, generator=g, dtype=torch.float64))


def build(kind: str, h: float) -> tuple[torch.nn.Parameter, torch.optim.Optimizer]:
    theta0, p0 = start()
    x = torch.nn.Parameter(theta0.clone())
    decay = math.exp(-GAMMA * h)
    if kind in ("leapfrog", "euler"):
        cls = hamopt.Leapfrog if kind == "leapfrog" else hamopt.Euler
        opt = cls([x], lr=h, gamma=0.0, cap=None, mass="identity", mode="exact")
        opt.state[x]["momentum"] = p0.clone()
    elif kind.startswith("sgd"):
        dampening = 0.5 if kind == "sgd-dampened" else 0.0
        opt = torch.optim.SGD([x], lr=h * h / (1 - dampening), momentum=decay, dampening=dampening)
        opt.state[x]["momentum_buffer"] = -p0 / sgd_momentum_coefficient(opt.param_groups[0])
    else:
        cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
        amsgrad = kind == "adam-amsgrad"
        opt = cls([x], lr=h * h / (1 - decay), betas=(decay, 1 - 1e-9), eps=EPS, weight_decay=0.0,
                  amsgrad=amsgrad)
        c = adam_momentum_coefficient(opt.param_groups[0])
        # step 1e9: both bias corrections are 1 (and the float32 step counter stays put)
        state = {"step": torch.tensor(1e9), "exp_avg": -p0 / c, "exp_avg_sq": (ADAM_METRIC - EPS) ** 2}
        if amsgrad:
            state["max_exp_avg_sq"] = state["exp_avg_sq"].clone()
        opt.state[x].update(state)
    return x, opt


def energy_ratios(kind: str, h: float, kinetic_factor: float = 1.0) -> float:
    """``median_t |ΔH_t| / |ΔL_t|`` over ``DURATION / h`` steps with ``K = kinetic_factor · kinetic(opt)``."""
    x, opt = build(kind, h)

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = quadratic(x)
        loss.backward()
        return loss

    def state() -> tuple[float, float]:
        loss = float(quadratic(x.detach()))
        return loss, loss + kinetic_factor * kinetic(opt)

    loss, ham = state()
    ratios = []
    for _ in range(round(DURATION / h)):
        opt.step(closure)
        new_loss, new_ham = state()
        if new_loss != loss:
            ratios.append(abs(new_ham - ham) / abs(new_loss - loss))
        loss, ham = new_loss, new_ham
    return statistics.median(ratios)


@pytest.mark.parametrize(
    "kind,order",
    [("leapfrog", 2), ("euler", 1), ("sgd", 1), ("sgd-dampened", 1), ("adam", 1), ("adamw", 1),
     ("adam-amsgrad", 1)],
)
def test_energy_is_conserved_to_first_order_in_h(kind, order):
    coarse, fine = energy_ratios(kind, COARSE), energy_ratios(kind, FINE)
    assert coarse < 0.3  # the step's energy change is a small fraction of its loss change
    expected = 0.5**order
    assert 0.7 * expected < fine / coarse < 1.4 * expected  # and it shrinks as h^order


def test_dampened_sgd_is_the_same_hamiltonian_map_as_undampened():
    """With lr = h²/(1−d) and p = −√(lr/(1−d))·b the dampened and undampened runs coincide."""
    x0, plain = build("sgd", COARSE)
    x1, dampened = build("sgd-dampened", COARSE)
    for x, opt in ((x0, plain), (x1, dampened)):
        for _ in range(20):
            opt.zero_grad()
            quadratic(x).backward()
            opt.step()
    assert torch.allclose(x0, x1, rtol=1e-10, atol=1e-12)
    assert kinetic(plain) == pytest.approx(kinetic(dampened), rel=1e-9)


@pytest.mark.parametrize("kind", ["adam", "adamw", "adam-amsgrad"])
def test_the_earlier_adam_kinetic_energy_only_tracks_the_loss(kind):
    """K = ½·lr·Σ m̂²/(√v̂+ε) is (1−β1) times the corrected K: ΔH is the loss change."""
    for h in (COARSE, FINE):
        beta1 = math.exp(-GAMMA * h)
        assert energy_ratios(kind, h, kinetic_factor=1 - beta1) > 0.9


def test_the_earlier_dampened_sgd_kinetic_energy_fails_the_limit():
    """K = ½·lr·‖b‖² ignores the dampening (too small by 1−d = ½): H does not stay constant."""
    coarse = energy_ratios("sgd-dampened", COARSE, kinetic_factor=0.5)
    fine = energy_ratios("sgd-dampened", FINE, kinetic_factor=0.5)
    assert coarse > 0.3 and fine > 0.3
    assert fine > 0.8 * coarse
