r"""Memory ablations (spec §6): does the energy series depend on where the numbers live in memory?

Three treatments of one training run, composed around the optimiser rather than inside it:

* ``default`` — nothing changes.
* ``thrash`` — every evaluation of the loss closure first writes and reads a buffer larger than
  the last-level cache (twice its size; on a CUDA device, twice its L2 cache, in device memory). In exact mode the optimiser calls the closure at θ_t and
  again at θ_{t+1}, between the drift and the closing half-kick, so the cache is flushed between
  the two half-kicks; in streaming mode the closure call sits between a step's opening half-kick
  and its deferred closing one.
* ``scramble`` — after every step, every parameter and every optimiser state tensor (the
  momenta) is moved into freshly allocated storage whose start is shifted by 1–4 elements in
  rotation, so addresses and alignment change from step to step.

An ablation has two hooks: :meth:`Ablation.wrap` wraps the loss closure, :meth:`Ablation.after_step`
runs after each optimiser step. The lab compares each ablation's per-step energy series with the
default's and reports the largest absolute difference (:func:`max_abs_difference`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = [
    "ABLATION_NAMES",
    "Ablation",
    "Default",
    "Scramble",
    "Thrash",
    "last_level_cache_bytes",
    "make_ablation",
    "max_abs_difference",
]

ABLATION_NAMES = ("default", "thrash", "scramble")
_FALLBACK_LLC = 64 * 2**20


def last_level_cache_bytes() -> int:
    """Size of the largest CPU cache in bytes (sysfs on Linux); 64 MiB when it cannot be read."""
    best = 0
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in os.listdir(base):
            path = os.path.join(base, entry, "size")
            if not os.path.isfile(path):
                continue
            text = open(path).read().strip().upper()
            mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
            digits = text.rstrip("KMG")
            if digits.isdigit():
                best = max(best, int(digits) * mult)
    except OSError:
        return _FALLBACK_LLC
    return best or _FALLBACK_LLC


class Ablation:
    """Base: the ``default`` treatment (no change)."""

    name = "default"

    def wrap(self, batch_loss: Callable[[], Tensor]) -> Callable[[], Tensor]:
        return batch_loss

    def after_step(self, optimizer: Optimizer) -> None:
        return None


Default = Ablation


class Thrash(Ablation):
    """Write then read a buffer of ``2 × last-level cache`` before each loss evaluation."""

    name = "thrash"

    def __init__(self, nbytes: int | None = None, device: str | torch.device = "cpu") -> None:
        device = torch.device(device)
        if nbytes is None:
            llc = last_level_cache_bytes()
            if device.type == "cuda":  # the GPU's last-level cache is its L2
                llc = int(torch.cuda.get_device_properties(device).L2_cache_size) or llc
            nbytes = 2 * llc
        size = nbytes
        if size < 1:
            raise ValueError(f"nbytes must be >= 1, got {size}")
        self.buffer = torch.empty(max(1, size // 8), dtype=torch.float64, device=device)
        self.calls = 0
        self.checksum = 0.0

    def thrash(self) -> None:
        self.calls += 1
        self.buffer.fill_(float(self.calls % 7))  # write every cache line
        self.checksum = float(self.buffer.sum())  # read every cache line back

    def wrap(self, batch_loss: Callable[[], Tensor]) -> Callable[[], Tensor]:
        def thrashed() -> Tensor:
            self.thrash()
            return batch_loss()

        return thrashed


class Scramble(Ablation):
    """Move parameters and optimiser state tensors into fresh, shifted storage after each step."""

    name = "scramble"

    def __init__(self) -> None:
        self.steps = 0

    @staticmethod
    def _relocated(t: Tensor, shift: int) -> Tensor:
        flat = torch.empty(t.numel() + shift, dtype=t.dtype, device=t.device)
        out = flat[shift:].view(t.shape)
        out.copy_(t)
        return out

    def after_step(self, optimizer: Optimizer) -> None:
        self.steps += 1
        shift = 1 + self.steps % 4
        with torch.no_grad():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.is_contiguous():
                        p.data = self._relocated(p.data, shift)
                    else:
                        p.data = p.data.clone()
            for key, st in list(optimizer.state.items()):
                if not isinstance(st, dict):
                    continue
                for name, value in list(st.items()):
                    if isinstance(value, Tensor) and value.dim() > 0 and value.is_contiguous():
                        st[name] = self._relocated(value, shift)
            scratch = getattr(optimizer, "_scratch", None)
            if scratch is not None:  # the integrators' rollback buffers: fresh too
                optimizer._scratch = tuple([t.clone() for t in part] for part in scratch)  # type: ignore[attr-defined]


def make_ablation(name: str, device: str | torch.device = "cpu") -> Ablation:
    """The ablation called ``name`` (one of :data:`ABLATION_NAMES`); ``thrash`` flushes the cache
    of ``device`` (the CPU's last-level cache, or a CUDA device's L2)."""
    if name == "default":
        return Ablation()
    if name == "thrash":
        return Thrash(device=device)
    if name == "scramble":
        return Scramble()
    raise ValueError(f"ablation must be one of {ABLATION_NAMES}, got {name!r}")


@dataclass(frozen=True)
class SeriesDifference:
    """``max_t |a_t − b_t|`` over the steps both series have (NaN-aware)."""

    max_abs: float
    steps_compared: int
    identical: bool


def max_abs_difference(a: Sequence[float | None], b: Sequence[float | None]) -> SeriesDifference:
    """Largest absolute difference of two per-step series over their common prefix.

    Steps where both are None (or both NaN) count as equal; where exactly one is missing the
    difference is infinite. ``identical`` is True when every compared value is bit-equal.
    """
    n = min(len(a), len(b))
    worst = 0.0
    identical = len(a) == len(b)
    for x, y in zip(a[:n], b[:n]):
        xm = x is None or (isinstance(x, float) and math.isnan(x))
        ym = y is None or (isinstance(y, float) and math.isnan(y))
        if xm and ym:
            continue
        if xm or ym:
            worst, identical = math.inf, False
            continue
        d = abs(float(x) - float(y))
        if d != 0.0 or float(x) != float(y):
            identical = False
        worst = max(worst, d)
    return SeriesDifference(worst, n, identical)
