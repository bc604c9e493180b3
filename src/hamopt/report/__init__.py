r"""The report of a sweep directory: analysis tables, PNG figures, a self-contained HTML page.

:func:`write_report` (``hamopt report DIR``) reads ``DIR``'s runs, writes ``drift.csv``,
``table.csv``, ``decomposition.csv``, ``cap.csv``, ``ablations.csv``, ``timing.csv``, the figures
under ``figures/``, ``catalog.duckdb`` and ``report.html`` (figures embedded, opens offline), which
opens with a summary (what was run, the verdict counts, the main finding, why the band differs from
the study's) and sets each claim of the reference study beside what was measured, with one of three
verdicts (:mod:`hamopt.report.claims`). The page is an ordered list of sections
(:data:`hamopt.report.sections.SECTIONS`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .claims import Claim, evaluate_claims, verdict_counts

__all__ = ["Claim", "ReportFiles", "evaluate_claims", "verdict_counts", "write_report"]


@dataclass(frozen=True)
class ReportFiles:
    """Paths written by :func:`write_report`, the claim verdicts and the run accounting
    (:class:`~hamopt.experiments.store.RunAccounting`)."""

    html: Path
    table: Path
    figures: tuple[Path, ...]
    claims: tuple[Claim, ...]
    accounting: Any = None

    @property
    def verdict_counts(self) -> str:
        """"8 held, 3 did not hold, 10 inconclusive" (and ", N not tested" when any)."""
        return verdict_counts(self.claims)


def _ablation_series(out: Path, analysis: Any) -> dict[str, dict[str, list[Any]]]:
    from ..experiments.store import RunStore

    extra = [d for d in analysis.drift if d["ablation"] != "default"]
    if not extra:
        return {}
    first = extra[0]
    key = (first["optimizer"], first["band"], first["step_size"], first["seed"])
    store = RunStore(out)
    series = {}
    for d in analysis.drift:
        if (d["optimizer"], d["band"], d["step_size"], d["seed"]) == key:
            series[d["ablation"]] = store.read_steps(d["run_id"]).to_pydict()
    return series


def _runs_line(analysis: Any) -> str:
    """How many runs the plan lists and what became of each, missing and damaged included."""
    status = {
        s: sum(d["status"] == s for d in analysis.drift)
        for s in ("completed", "diverged", "failed")
    }
    acc = analysis.accounting
    parts = [f"{status['completed']} completed", f"{status['diverged']} diverged",
             f"{status['failed']} failed"]
    if acc is not None:
        parts += [f"{len(acc.missing)} missing", f"{len(acc.damaged)} damaged"]
    planned = len(acc.planned) if acc is not None and acc.planned is not None else None
    head = f"{planned} planned" if planned is not None else f"{len(analysis.drift)}"
    return f"{head} ({', '.join(parts)})"


def _meta(out: Path, analysis: Any) -> tuple[str, dict[str, Any]]:
    import yaml

    from ..experiments.store import RunStore

    store = RunStore(out)
    spec_text = store.read_text("spec.yaml")
    spec = yaml.safe_load(spec_text) if spec_text else {}
    manifests = [m for d in analysis.drift[:1] if (m := store.manifest(d["run_id"])) is not None]
    versions = manifests[0].get("versions", {}) if manifests else {}
    ds = spec.get("dataset", {})
    model = spec.get("model", {})
    meta = {
        "spec": spec.get("name", "?"),
        "spec hash": spec.get("spec_hash", "?"),
        "dataset": f"{ds.get('name')} (train_size={ds.get('train_size')}, augment={ds.get('augment')})",
        "model": f"{model.get('name')} (width={model.get('width')}, depth={model.get('depth')})",
        "batch size / steps": f"{spec.get('batch_size')} / {spec.get('steps')}",
        "seeds": ", ".join(str(s) for s in spec.get("seeds", [])),
        "dtype / device": f"{spec.get('dtype')} / {spec.get('device')}",
        "threads": manifests[0].get("threads") if manifests else "?",
        "runs": _runs_line(analysis),
        "step sizes as run": "; ".join(
            f"{k}: {v}" for k, v in (spec.get("resolved_step_sizes") or {}).items()
        ),
        "torch / python": f"{versions.get('torch', '?')} / {versions.get('python', '?')}",
        "platform": versions.get("platform", "?"),
    }
    cal = spec.get("stability_calibration")
    if cal:
        meta["stability calibration"] = (
            f"λmax(M⁻¹H) = {cal['lambda_preconditioned']:.4g} → dt_c = {cal['dt_limit']:.4g}; "
            f"λmax(H) = {cal['lambda_hessian']:.4g} (at initialisation, seed {cal['seed']}, batch {cal['batch_size']})"
        )
    return f"hamopt dynamics lab — {spec.get('name', out.name)}", meta


NOTES = (
    "drift(step) = median of |x_t| over the tail t ∈ [0.8 T, T] of each run, for x = ΔH^int, ΔH^traj and δ.",
    "ΔH^int: exact-mode Leapfrog from its two same-batch gradient evaluations; baselines from one extra forward "
    "pass on the same batch after the step. Streaming-mode Leapfrog has no same-batch second gradient, so its "
    "ΔH^int is derived as ΔH^traj − δ, with δ from one extra forward pass; its p_{t+1} carries the next batch's "
    "half-kick. The last step of a streaming run has no ΔH^traj/ΔH^int (they would need one more gradient).",
    "δ_t = L_{B_{t+1}}(θ_{t+1}) − L_{B_t}(θ_{t+1}); ΔH^traj_t = ΔH^int_t + δ_t. For the last step the lab runs one "
    "extra forward pass on the next batch.",
    "Fits: one point per (step size, seed) over completed default runs; diverged runs (loss or gradient "
    "non-finite, or training loss above 10³ × the run's initial loss) are left out and listed below, with "
    "any run the plan lists that is missing or damaged. Bootstrap: 1000 (spec: bootstrap) resamples of the "
    "seeds with replacement.",
    "Energy conventions (spec §5): Leapfrog K = ½Σm‖p‖², step = dt; SGD-momentum (dampening d) "
    "K = ½·lr/(1−d)·‖b‖², h = √(lr(1−d)); AdamW K = ½·lr/(1−β1)·Σm̂²/(√v̂+ε), h = √(lr(1−β1)); step axis = lr.",
    "Time per step is the median wall time of each optimiser's completed runs; runs of different "
    "optimisers ran at different moments, so on a shared machine the ratios move with the load.",
    "Reversibility: γ = 0, no cap, exact mode, one fixed batch; error = ‖θ_back − θ_0‖/‖θ_0‖.",
    "Memory ablations: thrash writes and reads a buffer of twice the last-level cache before every loss "
    "evaluation (so between the two half-kicks); scramble moves every parameter and optimiser state tensor to "
    "fresh, shifted storage after each step.",
    'Query every step with SQL (read-only): python -c "from hamopt.experiments.catalog import open_catalog; '
    "open_catalog('DIR').sql('SELECT * FROM steps JOIN runs USING (run_id) LIMIT 5').show()\"",
)


def write_report(out: str | Path, *, processes: int | None = None) -> ReportFiles:
    """Analyse ``out`` and write its tables, figures, catalogue and ``report.html``.

    The figures and the catalogue are drawn by ``processes`` processes (this one and forked
    children, :mod:`hamopt.report.parallel`; default: two where two CPUs are available); the
    files are the same whatever the number."""
    from ..experiments.analysis import analyse, write_analysis
    from ..experiments.catalog import build_catalog
    from ..experiments.store import atomic_write_text
    from .context import read_context
    from .figures import figure_jobs
    from .html import render_html
    from .parallel import default_processes, run_jobs
    from .stability_figures import write_stability_figures

    if processes is not None and (isinstance(processes, bool) or not isinstance(processes, int)
                                  or not 1 <= processes <= 64):
        raise ValueError(f"processes must be a whole number in 1..64, got {processes!r}")

    root = Path(out)
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root} is not a directory: run `hamopt sweep SPEC --out {root}` first"
        )
    analysis = analyse(root)
    write_analysis(root, analysis)
    context = read_context(root)
    figures, jobs = figure_jobs(root, analysis, _ablation_series(root, analysis), context)
    figures.update(write_stability_figures(root, analysis))
    here, catalog_error = os.getpid(), []

    def catalog() -> None:  # its error is raised after report.html is written, as it always was
        try:
            build_catalog(root)
        except Exception as exc:
            if os.getpid() != here:  # a child leaves the failed job to this process
                raise
            catalog_error.append(exc)

    jobs.insert(3, catalog)  # ~1 s (duckdb's import and the views): after the three costliest figures
    run_jobs(jobs, processes=processes or default_processes())
    claims = evaluate_claims(analysis)
    title, meta = _meta(root, analysis)
    page = render_html(
        title=title, meta=meta, analysis=analysis, claims=claims, figures=figures, notes=NOTES,
        context=context,
    )
    atomic_write_text(root / "report.html", page)
    if catalog_error:
        raise catalog_error[0]
    return ReportFiles(
        root / "report.html", root / "table.csv", tuple(figures.values()), tuple(claims),
        analysis.accounting,
    )
