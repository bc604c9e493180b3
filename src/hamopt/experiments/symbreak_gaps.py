r"""The symmetry-breaking study's answer to claim 1: the gap to AdamW, with and without biases.

Per (optimiser, variant), over the completed runs of the study directory (the evaluated runs;
tuning runs live in ``OUT/tune``):

* ``loss``: the held-out **test** loss (``test_loss`` of the run manifests; the final validation
  loss for a preset without test windows), mean over seeds with a 95 % t-interval;
* ``gap``: ``loss(optimiser, seed) − loss(AdamW, seed)`` in the same variant, **paired by seed**
  (same initialisation and batches), mean and 95 % t-interval over the seeds both completed;
  positive = worse than AdamW;
* ``narrowing`` (biased variants only): ``gap(symmetric, seed) − gap(biased, seed)``, paired by
  seed: positive = the biases narrowed the gap to AdamW (negative = widened it);
* ``bias_effect``: ``loss(biased, seed) − loss(symmetric, seed)`` for the optimiser itself:
  negative = the biases helped it;
* ``state_bytes_per_parameter`` (the optimiser's state; :mod:`.symbreak_metrics`), the downstream
  scores (``byte_accuracy``, ``bracket_accuracy``, ``keyword_completion``: mean and interval),
  the chosen grid point and ``tail_drop``: how much the validation loss still fell over the last
  20 % of the steps (mean over seeds; near 0 = flattened).

Intervals are :func:`hamopt.diagnostics.cap.mean_ci` (Student t, n − 1 degrees of freedom) of the
per-seed values or differences.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from ..diagnostics.cap import mean_ci

__all__ = ["GAP_COLUMNS", "REFERENCE", "format_gaps", "gap_rows"]

REFERENCE = "adamw"
SCORES = ("byte_accuracy", "bracket_accuracy", "keyword_completion")
GAP_COLUMNS = [
    "optimizer", "variant", "n", "chosen", "state_bytes_per_parameter",
    "loss", "loss_ci_low", "loss_ci_high", "gap", "gap_ci_low", "gap_ci_high",
    "narrowing", "narrowing_ci_low", "narrowing_ci_high",
    "bias_effect", "bias_effect_ci_low", "bias_effect_ci_high", "tail_drop",
    *[f"{s}{x}" for s in SCORES for x in ("", "_ci_low", "_ci_high")],
]


def _loss(man: dict[str, Any]) -> float | None:
    v = man.get("test_loss", man.get("final_val_loss"))
    return None if v is None or not math.isfinite(v) else float(v)


def _tail_drop(man: dict[str, Any], cols: dict[str, list[Any]]) -> float | None:
    pts = [(s, v) for s, v in zip(cols["step"], cols["val_loss"], strict=True) if v is not None]
    final = man.get("final_val_loss")
    if not pts or final is None:
        return None
    cut = 0.8 * man.get("steps_done", pts[-1][0])
    before = [v for s, v in pts if s <= cut]
    return None if not before else before[-1] - final


def _put(row: dict[str, Any], key: str, values: list[float]) -> None:
    ci = mean_ci(values)
    row[key], row[f"{key}_ci_low"], row[f"{key}_ci_high"] = ci.mean, ci.ci_low, ci.ci_high


def _difference(a: dict[int, float], b: dict[int, float]) -> dict[int, float]:
    """``a[seed] − b[seed]`` for the seeds both hold."""
    return {s: a[s] - b[s] for s in sorted(set(a) & set(b))}


def _paired(a: dict[int, float], b: dict[int, float]) -> list[float]:
    return list(_difference(a, b).values())


def gap_rows(runs: list[tuple[dict[str, Any], dict[str, list[Any]]]],
             order: list[str]) -> list[dict[str, Any]]:
    """The rows of the gap table (see the module docstring) in the optimiser ``order``."""
    loss: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    members: dict[tuple[str, str], list[tuple[dict[str, Any], Any]]] = defaultdict(list)
    for man, cols in runs:
        if man["status"] != "completed" or man.get("stage", "eval") != "eval":
            continue
        key = (man["optimizer"], man["variant"])
        members[key].append((man, cols))
        value = _loss(man)
        if value is not None:
            loss[key][man["seed"]] = value
    rank = {o: i for i, o in enumerate(order)}
    rows = []
    for opt, variant in sorted(members, key=lambda k: (rank.get(k[0], 99), k[1] != "symmetric", k[1])):
        done = members[(opt, variant)]
        row: dict[str, Any] = {"optimizer": opt, "variant": variant, "n": len(done),
                               "chosen": done[0][0].get("grid_point") or None}
        sizes = [m.get("state_bytes_per_parameter") for m, _ in done]
        sizes = [s for s in sizes if s is not None]
        row["state_bytes_per_parameter"] = sum(sizes) / len(sizes) if sizes else None
        _put(row, "loss", list(loss[(opt, variant)].values()))
        _put(row, "gap", _paired(loss[(opt, variant)], loss.get((REFERENCE, variant), {})))
        if variant != "symmetric":
            gap_sym = _difference(loss[(opt, "symmetric")], loss[(REFERENCE, "symmetric")])
            gap_bias = _difference(loss[(opt, variant)], loss[(REFERENCE, variant)])
            _put(row, "narrowing", _paired(gap_sym, gap_bias))
            _put(row, "bias_effect", _paired(loss[(opt, variant)], loss[(opt, "symmetric")]))
        else:
            for k in ("narrowing", "bias_effect"):
                row[k] = row[f"{k}_ci_low"] = row[f"{k}_ci_high"] = None
        drops = [d for d in (_tail_drop(m, c) for m, c in done) if d is not None]
        row["tail_drop"] = sum(drops) / len(drops) if drops else None
        for score in SCORES:
            _put(row, score, [m["downstream"][score] for m, _ in done if m.get("downstream")])
        rows.append(row)
    return rows


def _f(v: Any, spec: str = "+.4f") -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _ci(r: dict[str, Any], key: str, spec: str = "+.4f") -> str:
    return f"{_f(r[key], spec)} [{_f(r[key + '_ci_low'], spec)}, {_f(r[key + '_ci_high'], spec)}]"


def format_gaps(rows: list[dict[str, Any]]) -> str:
    """The gap table as aligned text: test loss, gap to AdamW, narrowing, state bytes, scores."""
    head = (f"{'optimizer':<13}{'variant':<10}{'n':>2} {'test loss':>8} {'gap to AdamW [95% CI]':<29}"
            f"{'narrowing by biases [95% CI]':<31}{'B/param':>8}{'tail drop':>10}"
            f"{'bracket':>8}{'keyword':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['optimizer']:<13}{r['variant']:<10}{r['n']:>2} {_f(r['loss'], '.4f'):>8} "
            f"{_ci(r, 'gap'):<29}{(_ci(r, 'narrowing') if r['narrowing'] is not None else '—'):<31}"
            f"{_f(r['state_bytes_per_parameter'], '.1f'):>8}{_f(r['tail_drop'], '.4f'):>10}"
            f"{_f(r['bracket_accuracy'], '.3f'):>8}{_f(r['keyword_completion'], '.3f'):>8}")
    return "\n".join(lines)
