"""hamopt.Hybrid: phase switching, schedulers, closures, state_dict resume, bad phase specs."""

import io
import math

import pytest
import torch
import torch.nn.functional as F

from hamopt import Hybrid, Phase, families
from hamopt.energy import EnergyTracker
from hamopt.optim import PhaseError, Plateau, StabilityCrossing


def _problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    x = torch.randn(24, 5, generator=g)
    y = torch.randint(0, 3, (24,), generator=g)
    return model, x, y


def _closure(opt, model, x, y, calls=None):
    def closure():
        if calls is not None:
            calls.append(1)
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    return closure


THREE = [
    Phase("leapfrog", 0.2, hyper={"gamma": 0.1}, steps=3),
    Phase("adamw", 1e-2, steps=2),
    Phase("sgd", 0.05, hyper={"momentum": 0.9}),
]


def test_switches_after_each_phase_length_and_the_last_phase_runs_on():
    model, x, y = _problem()
    opt = Hybrid(model.parameters(), THREE)
    seen = []
    for _ in range(8):
        opt.step(_closure(opt, model, x, y))
        seen.append((opt.stats["step"], opt.stats["phase"], opt.stats["switched"]))
    assert [s[1] for s in seen] == [0, 0, 0, 1, 1, 2, 2, 2]
    assert [s[0] for s, in zip(seen) if s[2]] == [2, 4]
    assert opt.switch_steps == (3, 5)
    assert isinstance(opt.active_optimizer, torch.optim.SGD) and opt.phase_step == 3


def test_fraction_lengths_come_from_total_steps():
    model, _, _ = _problem()
    opt = Hybrid(model.parameters(), [Phase("leapfrog", 0.1, fraction=0.25), Phase("adamw", 1e-3, fraction=0.5),
                                      Phase("sgd", 0.01, hyper={"momentum": 0.5})], total_steps=10)
    assert [p.length for p in opt.phases] == [2, 5, None]


def test_plateau_rule_switches_when_the_loss_stops_falling():
    model, _, _ = _problem()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt = Hybrid(model.parameters(), [Phase("sgd", 0.01, hyper={"momentum": 0.9},
                                            switch=Plateau(window=2, rel_tol=0.05)),
                                      Phase("adamw", 1e-3)])
    losses = [10.0, 8.0, 6.0, 4.0, 3.9, 3.85, 3.84, 3.83]
    phase = []
    for v in losses:
        opt.step(loss=v)
        phase.append(opt.stats["switched"])
    # after step 5 the windows (6, 4 | 3.9, 3.85) improve by 22 %; after step 6
    # (4, 3.9 | 3.85, 3.84) by 2.7 % < 5 %: the phase ends there
    assert phase.index(True) == 6 and opt.switch_steps == (7,)


def test_plateau_without_a_loss_is_a_clear_error():
    model, _, _ = _problem()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt = Hybrid(model.parameters(), [Phase("sgd", 0.01, hyper={"momentum": 0.9}, switch={"plateau": {"window": 2}}),
                                      Phase("adamw", 1e-3)])
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(PhaseError, match=r"phases\[0\]\.switch: plateau needs the training loss"):
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())) and opt.phase_step == 0


def test_stability_rule_reads_an_injected_ratio_source():
    model, x, y = _problem()
    ratios = iter([0.5, 1.2, 1.8, 2.1, 0.1, 0.1])
    asked = []

    def source():
        asked.append(1)
        return next(ratios)

    opt = Hybrid(model.parameters(), [
        Phase("adamw", 1e-3, switch=StabilityCrossing(source, level=2.0, every=2)),
        Phase("leapfrog", 0.1, switch=StabilityCrossing(source, level=0.2, above=False), steps=9),
        Phase("sgd", 0.01, hyper={"momentum": 0.9}),
    ])
    switched = []
    for _ in range(10):
        opt.step(_closure(opt, model, x, y))
        switched.append(opt.stats["switched"])
    # phase 0 asks after steps 1, 3, 5, 7 (every 2): 0.5, 1.2, 1.8, 2.1 -> switch after step 7;
    # phase 1 asks every step: 0.1 <= 0.2 -> switch after its first step
    assert [i for i, s in enumerate(switched) if s] == [7, 8]
    assert opt.switch_steps == (8, 9) and len(asked) == 5


def test_exact_leapfrog_phase_needs_the_closure_and_evaluates_it_twice():
    model, x, y = _problem()
    opt = Hybrid(model.parameters(), [Phase("leapfrog", 0.1, steps=2), Phase("adamw", 1e-3)])
    with pytest.raises(ValueError, match="needs a closure"):
        opt.step()
    calls = []
    for _ in range(4):
        opt.step(_closure(opt, model, x, y, calls))
    assert len(calls) == 2 * 2 + 2


def test_streaming_leapfrog_phase_takes_loss_without_a_closure():
    model, x, y = _problem()
    opt = Hybrid(model.parameters(), [Phase("leapfrog", 0.1, mode="streaming", steps=2), Phase("adamw", 1e-3)])
    for _ in range(3):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step(loss=loss)
    assert opt.stats["phase"] == 1 and opt.switch_steps == (2,)


def test_lr_scheduler_scales_every_phase_by_the_same_factor():
    model, x, y = _problem()
    opt = Hybrid(model.parameters(), [Phase("leapfrog", 0.2, steps=2), Phase("adamw", 1e-2)])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5**t)
    sizes = []
    for _ in range(4):
        opt.step(_closure(opt, model, x, y))
        sched.step()
        sizes.append(opt.active_optimizer.param_groups[0]["lr"])
    # after each step the next step's size is phase.lr * 0.5^(t+1); the switch keeps the factor
    assert sizes == pytest.approx([0.2 * 0.5, 1e-2 * 0.25, 1e-2 * 0.125, 1e-2 * 0.0625])
    assert opt.param_groups[0]["step_size"] == pytest.approx(1e-2 * 0.125)  # the last step's size


def _run(opt, model, x, y, sched, steps):
    for t in range(steps):
        xb, yb = x[(t % 3) * 8:(t % 3) * 8 + 8], y[(t % 3) * 8:(t % 3) * 8 + 8]
        opt.step(_closure(opt, model, xb, yb))
        sched.step()


def _resume_phases():
    return [
        Phase("leapfrog", 0.2, hyper={"gamma": 0.05}, steps=3),
        Phase("adamw", 3e-3, hyper={"weight_decay": 0.01}, steps=5, switch=Plateau(window=2, rel_tol=1e-4)),
        Phase("sgd", 0.03, hyper={"momentum": 0.9}, steps=2),
        Phase("leapfrog", 0.1, handover="velocity"),
    ]


def test_state_dict_resume_mid_phase_is_bit_for_bit():
    model, x, y = _problem()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    opt = Hybrid(model.parameters(), _resume_phases())
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.97)
    _run(opt, model, x, y, sched, 14)
    reference = [p.detach().clone() for p in model.parameters()]
    reference_switches = opt.switch_steps
    assert len(reference_switches) == 3

    model.load_state_dict(init)
    opt = Hybrid(model.parameters(), _resume_phases())
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.97)
    _run(opt, model, x, y, sched, 5)  # inside phase 1 (steps 3..7)
    assert opt.phase_index == 1 and opt.phase_step == 2
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)

    model2, _, _ = _problem(seed=5)
    model2.load_state_dict(saved["model"])
    opt2 = Hybrid(model2.parameters(), _resume_phases())
    sched2 = torch.optim.lr_scheduler.ExponentialLR(opt2, gamma=0.97)
    opt2.load_state_dict(saved["opt"])
    sched2.load_state_dict(saved["sched"])
    assert isinstance(opt2.active_optimizer, torch.optim.AdamW) and opt2.phase_step == 2
    for t in range(5, 14):
        xb, yb = x[(t % 3) * 8:(t % 3) * 8 + 8], y[(t % 3) * 8:(t % 3) * 8 + 8]
        opt2.step(_closure(opt2, model2, xb, yb))
        sched2.step()
    for a, b in zip(reference, model2.parameters(), strict=True):
        assert torch.equal(a, b.detach())
    assert opt2.switch_steps == reference_switches


def test_load_refuses_a_state_saved_with_other_phases():
    model, x, y = _problem()
    opt = Hybrid(model.parameters(), THREE)
    opt.step(_closure(opt, model, x, y))
    other = Hybrid(model.parameters(), [Phase("leapfrog", 0.3, steps=3), Phase("adamw", 1e-2)])
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match="saved with other phases"):
        other.load_state_dict(opt.state_dict())
    assert other.phase_index == 0 and all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize(
    ("phases", "kwargs", "where"),
    [
        ([{"family": "adamx", "lr": 1e-3}], {}, r"phases\[0\]\.family: unknown optimiser type 'adamx'"),
        ([Phase("leapfrog", 0.1, steps=2), Phase("adamw", -1.0)], {}, r"phases\[1\]\.lr: must be a finite number > 0"),
        ([Phase("leapfrog", 0.1, steps=0), Phase("adamw", 1e-3)], {}, r"phases\[0\]\.steps: must be an integer >= 1"),
        ([Phase("leapfrog", 0.1, steps=2, fraction=0.5), Phase("adamw", 1e-3)], {"total_steps": 10},
         r"phases\[0\]\.steps: give steps or fraction"),
        ([Phase("leapfrog", 0.1, fraction=0.5), Phase("adamw", 1e-3)],
         {}, r"phases\[0\]\.fraction: needs the Hybrid's total_steps"),
        ([Phase("leapfrog", 0.1, fraction=1.5), Phase("adamw", 1e-3)],
         {"total_steps": 10}, r"phases\[0\]\.fraction: must be a number in \(0, 1\]"),
        ([Phase("leapfrog", 0.1, fraction=1.0), Phase("adamw", 1e-3)],
         {"total_steps": 10}, r"phases\[0\]\.fraction: .*leaving none"),
        ([Phase("leapfrog", 0.1), Phase("adamw", 1e-3)], {}, r"phases\[0\]\.steps: a phase before the last needs"),
        ([Phase("leapfrog", 0.1, steps=1), Phase("adamw", 1e-3, hyper={"gama": 1})],
         {}, r"phases\[1\]\.hyper\.gama: unknown key"),
        ([Phase("leapfrog", 0.1, steps=1), Phase("adamw", 1e-3, mode="exact")],
         {}, r"phases\[1\]\.mode: mode applies only to"),
        ([Phase("leapfrog", 0.1, steps=1, mode="fast"), Phase("adamw", 1e-3)],
         {}, r"phases\[0\]\.mode: mode must be one of"),
        ([Phase("leapfrog", 0.1, steps=1), Phase("sgd", 1e-3, hyper={"momentum": 0.0})],
         {}, r"phases\[1\]\.handover: 'velocity' needs momentum .*plain SGD"),
        ([Phase("leapfrog", 0.1, steps=1), Phase("ecdsep", 1e-3, hyper={"eta": 1.0})],
         {}, r"phases\[1\]\.handover: 'velocity'"),
        ([Phase("leapfrog", 0.1, steps=1), Phase("adamw", 1e-3, handover="carry")],
         {}, r"phases\[1\]\.handover: must be one of"),
        ([Phase("leapfrog", 0.1, switch={"plateau": {"window": 0}}), Phase("adamw", 1e-3)],
         {}, r"phases\[0\]\.switch: window: must be"),
        ([Phase("leapfrog", 0.1, switch={"cliff": {}}), Phase("adamw", 1e-3)],
         {}, r"phases\[0\]\.switch: unknown rule 'cliff'"),
        ([Phase("leapfrog", 0.1, steps=1), {"family": "adamw", "lr": 1e-3, "step": 3}],
         {}, r"phases\[1\]\.step: unknown field"),
        ([Phase("leapfrog", 0.1, steps=1), {"family": "adamw"}], {}, r"phases\[1\]\.lr: required"),
        ([], {}, r"phases: must be a non-empty list"),
    ],
)
def test_bad_phase_specs_are_refused_naming_phase_and_field(phases, kwargs, where):
    model, _, _ = _problem()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(PhaseError, match=where):
        Hybrid(model.parameters(), phases, **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_bad_hybrid_options_are_refused():
    model, _, _ = _problem()
    with pytest.raises(PhaseError, match=r"phases\.handover: must be one of 'velocity', 'reset'"):
        Hybrid(model.parameters(), THREE, handover="keep")
    with pytest.raises(ValueError, match="lr \\(the schedule factor\\) must be a finite number > 0"):
        Hybrid(model.parameters(), THREE, lr=0.0)
    with pytest.raises(ValueError, match=r"param_groups\[0\]\.momentum: unknown key"):
        Hybrid([{"params": list(model.parameters()), "momentum": 0.9}], THREE)


def test_energy_tracker_reports_each_phase_under_its_convention():
    model, x, y = _problem()
    opt = Hybrid(model.parameters(), [Phase("leapfrog", 0.2, steps=2), Phase("adamw", 1e-2, steps=2),
                                      Phase("ecdsep", 0.05, hyper={"eta": 2.0}, handover="reset")], seed=3)
    tracker = EnergyTracker(opt)
    rows = []
    for _ in range(6):
        rec = tracker.step(lambda: F.cross_entropy(model(x), y))
        rows.append((rec.step_size, opt.stats["label"], opt.stats["switched"], rec.kinetic))
    assert [r[0] for r in rows] == pytest.approx([0.2, 0.2, 1e-2, 1e-2, 0.05, 0.05])
    assert [r[1] for r in rows] == ["leapfrog"] * 2 + ["adamw"] * 2 + ["ecdsep"] * 2
    assert [r[2] for r in rows] == [False, True, False, True, False, False]
    # ECDSep is displacement form: K = ½‖Δθ‖²/lr with the phase's lr
    assert all(math.isfinite(r[3]) and r[3] >= 0 for r in rows)
    assert families.for_optimizer(opt) is families.get("hybrid")


def test_hybrid_family_builds_from_plain_data():
    model, x, y = _problem()
    fam = families.get("hybrid")
    hyper = fam.validate_hyper({"phases": [{"family": "leapfrog", "lr": 0.1, "fraction": 0.5},
                                           {"family": "adamw", "lr": 1e-3, "switch": {"plateau": {"window": 3}}}],
                                "total_steps": 8})
    opt = fam.build(model.parameters(), 1.0, hyper, seed=1)
    assert isinstance(opt, Hybrid) and opt.phases[0].length == 4
    assert fam.manifest(opt)["hybrid"]["phases"][1]["family"] == "adamw"
    with pytest.raises(ValueError, match=r"phases\[1\]\.lr"):
        fam.validate_hyper({"phases": [{"family": "leapfrog", "lr": 0.1, "steps": 1}, {"family": "adamw", "lr": 0}]})
