"""The Noether monitor reads the momentum through the optimiser's family."""

import pytest
import torch

from hamopt import families
from hamopt.diagnostics.noether import NoetherMonitor, momentum_reader
from hamopt.models.gpt import build_gpt


def _model():
    return build_gpt("tiny", n_layer=1, n_head=2, width=8, context=8, vocab_size=16, seed=1).double()


def test_momentum_source_follows_the_family_reader(restore_registry):
    def buffer_momentum(opt):
        return lambda p: -opt.state.get(p, {}).get("momentum_buffer", torch.zeros_like(p))

    m = _model()
    opt = torch.optim.RMSprop(m.parameters(), lr=1e-3, momentum=0.9)
    families.register_optimizer(torch.optim.RMSprop, name="rmsprop-with-momentum", momentum=buffer_momentum)
    assert momentum_reader(opt) is not None
    assert NoetherMonitor(m, opt).source == "momentum"


def test_a_family_without_reader_uses_the_displacement(restore_registry):
    m = _model()
    opt = torch.optim.RMSprop(m.parameters(), lr=1e-3)
    families.register_optimizer(torch.optim.RMSprop, name="rmsprop")
    assert momentum_reader(opt) is None
    assert NoetherMonitor(m, opt).source == "displacement"
    with pytest.raises(ValueError, match="keeps none"):
        NoetherMonitor(m, opt, source="momentum")


def test_sgd_reader_is_minus_root_lr_times_the_buffer():
    m = _model()
    opt = torch.optim.SGD(m.parameters(), lr=0.04, momentum=0.9)
    x = torch.randint(0, 16, (2, 8), generator=torch.Generator().manual_seed(0))
    _, loss = m(x, x)
    loss.backward()
    opt.step()
    read = momentum_reader(opt)
    p = next(m.parameters())
    assert torch.allclose(read(p), -0.2 * opt.state[p]["momentum_buffer"])
