"""The report recognises runs by their optimiser family (the run's type), not by the entry name."""

from types import SimpleNamespace

from hamopt.report import figures
from hamopt.report.claims import HELD, NOT_TESTED, evaluate_claims


def _analysis(entry_name, type_name):
    drift = [
        {"optimizer": entry_name, "type": type_name, "mode": "exact", "band": "band", "ablation": "default",
         "status": "completed", "step_size": s, "drift_int": d, "drift_traj": d}
        for s, d in ((0.002, 0.07), (0.004, 0.05))
    ]
    table = [
        {"optimizer": entry_name, "band": "band", "drift": kind, "slope": 0.01, "ci_low": -0.2, "ci_high": 0.2,
         "boot_low": -0.1, "boot_high": 0.2, "r2": 0.1, "n": 6}
        for kind in ("int", "traj")
    ]
    cap = [{"optimizer": entry_name, "band": "band", "step_size": 0.002, "n": 3, "cap_rate": 0.0,
            "ci_low": 0.0, "ci_high": 0.0}]
    return SimpleNamespace(drift=drift, table=table, cap=cap, reversibility=[], ablations=[], timing=[])


def _verdicts(analysis):
    return {c.topic: c.verdict for c in evaluate_claims(analysis)}


def test_a_leapfrog_entry_with_any_name_is_judged_as_leapfrog():
    verdicts = _verdicts(_analysis("my-integrator", "leapfrog"))
    assert verdicts["Leapfrog, reference band: drift slope — my-integrator, ΔH^int"] == HELD
    assert verdicts["Leapfrog band trend — my-integrator, ΔH^int"] == HELD
    assert verdicts["Energy cap in the band"] == HELD


def test_an_entry_named_leapfrog_of_another_family_is_not():
    verdicts = _verdicts(_analysis("leapfrog", "adam"))
    assert verdicts["Leapfrog, reference band: drift slope"] == NOT_TESTED
    assert verdicts["Energy cap in the band"] == NOT_TESTED


def test_cap_figure_asks_the_family_for_an_energy_cap():
    assert figures._has_energy_cap("leapfrog") and figures._has_energy_cap("euler")
    assert not figures._has_energy_cap("sgd") and not figures._has_energy_cap("ecdq1")
    assert not figures._has_energy_cap("not-registered-here") and not figures._has_energy_cap(None)
