"""Start-up cost: importing hamopt (the CLI included) does not import torch's compiler or its
DTensor package (about 1.4 s and 1.3 s); they are loaded by the first compiled step or DTensor."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import torch
import hamopt, hamopt.cli
from hamopt.optim import _distributed as D
from hamopt.optim import tensor_step
loaded = [m for m in ("torch._dynamo", "torch.distributed.tensor") if m in sys.modules]
print(",".join(loaded) or "none")
assert not D.is_dtensor(torch.zeros(2)) and not D.is_sharded(torch.zeros(2))
"""


def test_importing_hamopt_skips_the_compiler_and_dtensor():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "none", out.stdout


def test_dtensor_is_recognised_once_its_module_is_loaded():
    from torch.distributed.tensor import DTensor

    from hamopt.optim import _distributed as D

    assert D._dtensor_class() is DTensor


def test_never_traced_runs_eagerly_and_breaks_the_graph():
    import torch

    from hamopt.optim.tensor_step import never_traced

    seen = []

    @never_traced
    def host_side(x):
        seen.append(torch.compiler.is_compiling())
        return x + 1

    def program(x):
        return host_side(x * 2) * 3

    torch._dynamo.reset()
    explained = torch._dynamo.explain(program)(torch.ones(3))
    assert explained.graph_break_count == 1
    assert seen and not any(seen)
    torch.testing.assert_close(torch.compile(program, backend="eager")(torch.ones(3)), torch.full((3,), 9.0))
    torch._dynamo.reset()
