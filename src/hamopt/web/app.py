"""The Gradio page of ``hamopt demo``: a thin shell over :mod:`hamopt.playground` and
:mod:`hamopt.web.results`.

Three tabs:

* **Playground** — landscape, optimiser and hyperparameters; every change re-runs
  :func:`~hamopt.playground.run_trajectory` and redraws the path on the contour plot, H/K/L over
  the steps and |ΔH| per step (same-batch and cross-batch on the noisy quadratic). One button runs
  :func:`~hamopt.playground.drift_scan` and shows the fitted slope with its 95 % interval.
* **Reversibility** — :func:`~hamopt.playground.reversibility`: Leapfrog and Euler side by side.
* **Results** — a lab results directory (``--results``): Table 1, interactive drift,
  reversibility and cap plots, the static figures, and any run's energy series.

The handlers (``playground_view`` …) are plain functions of the control values that return the
markdown and figures to show; they never raise: invalid input becomes a visible message and a
diverging run is drawn as diverged.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import gradio as gr

from .. import playground as pg
from ..landscapes import LANDSCAPES
from . import figures as F
from .results import MissingResultError, PathOutsideResultsError, ResultsDir

__all__ = [
    "build_app",
    "csv_view",
    "drift_scan_view",
    "playground_view",
    "results_view",
    "reversibility_view",
    "run_view",
]

LANDSCAPE_CHOICES = [(info.label, name) for name, info in LANDSCAPES.items()]
OPTIMIZER_CHOICES = [(info.label, name) for name, info in pg.OPTIMIZERS.items()]
SHORT_NAMES = {
    "gamma": "γ",
    "mass": "M",
    "cap": "α",
    "momentum": "β",
    "weight_decay": "wd",
    "eta": "η",
    "f0": "F0",
    "nu": "ν",
}
# hyperparameter controls shown only for the optimisers that read them (OptimizerInfo.uses)
# (noise: shown on the noisy landscape only)
HYPER_FIELDS = ("gamma", "mass", "cap", "momentum", "weight_decay", "eta", "f0", "nu", "noise")


def _fmt(value: float | None, spec: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, spec)


def _config(
    landscape: str,
    optimizer: str,
    step_size: Any,
    gamma: Any,
    mass: Any,
    cap: Any,
    momentum: Any,
    weight_decay: Any,
    steps: Any,
    noise: Any,
    x0: Any,
    y0: Any,
    seed: Any,
    eta: Any = 1.0,
    f0: Any = -0.1,
    nu: Any = 0.0,
) -> pg.PlaygroundConfig:
    """Controls → a validated config (``cap`` 0 or empty means no cap; empty start = default)."""
    if (x0 is None) != (y0 is None):
        raise pg.PlaygroundInputError(
            "start", "give both x and y, or leave both empty for the landscape's default"
        )
    cap_value = None if cap is None or (isinstance(cap, (int, float)) and cap == 0) else cap
    return pg.PlaygroundConfig(
        landscape=landscape,
        optimizer=optimizer,
        step_size=step_size,
        gamma=gamma,
        mass=mass,
        cap=cap_value,
        momentum=momentum,
        weight_decay=weight_decay,
        steps=steps,
        noise=noise,
        start=None if x0 is None else (x0, y0),
        seed=seed,
        eta=eta,
        f0=f0,
        nu=nu,
    )


FIELD_LABELS = {
    "step_size": "dt / lr (step size)",
    "gamma": "γ damping",
    "mass": "mass M",
    "cap": "energy cap α",
    "momentum": "momentum / β₁",
    "weight_decay": "weight decay",
    "eta": "η (ECD)",
    "f0": "F0 / v0 (ECD loss floor)",
    "nu": "ν (ECD bounce)",
}


def _invalid(exc: pg.PlaygroundInputError) -> str:
    label = FIELD_LABELS.get(exc.field, exc.field)
    detail = str(exc).removeprefix(f"{exc.field}: ")
    return f"**Invalid input** — {label}: {detail}. Nothing was computed; fix the field to redraw."


# ---------------------------------------------------------------------- playground
def playground_view(*controls: Any) -> tuple[str, Any, Any, Any]:
    """Status markdown, contour, energy and |ΔH| figures for the control values."""
    try:
        config = _config(*controls)
        t0 = time.perf_counter()
        traj = pg.run_trajectory(config)
        ms = 1000 * (time.perf_counter() - t0)
    except pg.PlaygroundInputError as exc:
        msg = _invalid(exc)
        return (
            msg,
            F.message_figure(msg.replace("**", "")),
            F.message_figure("—"),
            F.message_figure("—"),
        )
    except Exception as exc:  # a page must never freeze on an unexpected failure
        msg = f"**Run failed** — {type(exc).__name__}: {exc}"
        return msg, F.message_figure(msg), F.message_figure("—"), F.message_figure("—")
    return _summary(traj, ms), F.contour_figure(traj), F.energy_figure(traj), F.delta_h_figure(traj)


def _summary(traj: pg.Trajectory, ms: float) -> str:
    c = traj.config
    used = ", ".join(
        f"{SHORT_NAMES.get(k, k)} = {'off' if getattr(c, k) is None else _fmt(getattr(c, k))}"
        for k in traj.config.info.uses
    )
    head = f"**{traj.optimizer_label}** {traj.step_label} = {c.step_size:g}" + (
        f", {used}" if used else ""
    )
    lines = [f"{head}; {traj.steps_run} steps in {ms:.0f} ms."]
    if traj.diverged:
        lines.append(
            f"⚠️ **Diverged at step {traj.diverged_at}**: {traj.divergence}. "
            "The path is drawn up to the last finite point."
        )
    lines.append(
        f"L: {_fmt(traj.loss[0])} → {_fmt(traj.loss[-1])}; "
        f"H: {_fmt(traj.hamiltonian[0])} → {_fmt(traj.hamiltonian[-1])}; "
        f"cap engaged {traj.cap_engagements}× of {traj.steps_run} steps."
    )
    drift = f"drift (tail median, last 20 %): |ΔH^int| = {_fmt(traj.drift_int, '.3e')}"
    if traj.noisy:
        drift += f", |ΔH^traj| = {_fmt(traj.drift_traj, '.3e')}"
        drift += f", |δ| = {_fmt(traj.drift_resampling, '.3e')}"
    lines.append(drift + f"; energy error |H−H0| = {_fmt(traj.energy_error, '.3e')}.")
    return "\n\n".join(lines)


def drift_scan_view(*controls: Any) -> tuple[str, Any]:
    """Markdown with the fitted slopes and the drift-vs-step-size figure."""
    try:
        config = _config(*controls)
        t0 = time.perf_counter()
        scan = pg.drift_scan(config)
        ms = 1000 * (time.perf_counter() - t0)
    except pg.PlaygroundInputError as exc:
        return _invalid(exc), F.message_figure(str(exc))
    except Exception as exc:
        msg = f"**Scan failed** — {type(exc).__name__}: {exc}"
        return msg, F.message_figure(msg)

    def line(name: str, fit: Any) -> str:
        if fit is None:
            return f"- {name}: no fit"
        return (
            f"- {name}: slope **{fit.slope:.3f}**, "
            f"95 % CI [{_fmt(fit.ci_low, '.3f')}, {_fmt(fit.ci_high, '.3f')}], "
            f"R² = {fit.r2:.4f}, n = {fit.n}"
        )

    sizes = ", ".join(f"{s:.3g}" for s in scan.step_sizes)
    parts = [
        f"**Drift vs {scan.step_label}** ({len(scan.step_sizes)} step sizes: {sizes}; "
        f"one point each; {ms:.0f} ms)",
        line("|ΔH^int| (same batch)", scan.fit_int),
    ]
    if scan.noisy:
        parts.append(line("|ΔH^traj| (cross batch)", scan.fit_traj))
    parts.append(line("energy error |H−H0|", scan.fit_error))
    if scan.fit_note:
        parts.append(f"⚠️ {scan.fit_note}")
    return "\n".join(parts), F.drift_scan_figure(scan)


def suggestion_view(landscape: str, optimizer: str) -> tuple[Any, ...]:
    """Suggested step size and steps for the pair, the default start, and which of the
    hyperparameter controls (:data:`HYPER_FIELDS`) the optimiser reads (the others are hidden)."""
    try:
        c = pg.suggested_config(landscape, optimizer)
    except pg.PlaygroundInputError:
        return tuple(gr.update() for _ in range(4 + len(HYPER_FIELDS)))
    label = f"{c.info.step_label} (step size)"
    return (
        gr.update(value=c.step_size, label=label),
        gr.update(value=c.steps),
        gr.update(value=c.start[0]),
        gr.update(value=c.start[1]),
        *(gr.update(visible=_shown(name, c)) for name in HYPER_FIELDS),
    )


def _shown(name: str, config: pg.PlaygroundConfig) -> bool:
    if name == "noise":
        return LANDSCAPES[config.landscape].cls.noisy
    return name in config.info.uses


CONTROL_NAMES = (
    "landscape",
    "optimizer",
    "step_size",
    "gamma",
    "mass",
    "cap",
    "momentum",
    "weight_decay",
    "steps",
    "noise",
    "x0",
    "y0",
    "seed",
    "eta",
    "f0",
    "nu",
)


def suggest_and_run(*controls: Any) -> tuple[Any, ...]:
    """A new landscape or optimiser: :func:`suggestion_view`'s control updates, then
    :func:`playground_view` with the suggested step size, steps and start (one run)."""
    values = dict(zip(CONTROL_NAMES, controls, strict=True))
    updates = suggestion_view(values["landscape"], values["optimizer"])
    # a bad choice keeps the current values; playground_view then reports it
    with contextlib.suppress(pg.PlaygroundInputError):
        c = pg.suggested_config(values["landscape"], values["optimizer"])
        values.update(step_size=c.step_size, steps=c.steps, x0=c.start[0], y0=c.start[1])
    return (*updates, *playground_view(*(values[n] for n in CONTROL_NAMES)))


# ---------------------------------------------------------------------- reversibility
def landscape_and_reversibility(landscape: str, *rest: Any) -> tuple[Any, ...]:
    """A new landscape on the reversibility tab: its default start, then the round trips."""
    info = LANDSCAPES.get(landscape)
    step_size, steps, mass, noise, x0, y0, seed = rest
    if info is None:
        return (gr.update(), gr.update(), *reversibility_view(landscape, *rest))
    x0, y0 = info.cls.default_start
    view = reversibility_view(landscape, step_size, steps, mass, noise, x0, y0, seed)
    return (gr.update(value=x0), gr.update(value=y0), *view)


def reversibility_view(
    landscape: str, step_size: Any, steps: Any, mass: Any, noise: Any, x0: Any, y0: Any, seed: Any
) -> tuple[str, Any]:
    try:
        config = _config(
            landscape, "leapfrog", step_size, 0.0, mass, None, 0.9, 0.0, steps, noise, x0, y0, seed
        )
        result = pg.reversibility(config)
    except pg.PlaygroundInputError as exc:
        return _invalid(exc), F.message_figure(str(exc))
    except Exception as exc:
        msg = f"**Round trip failed** — {type(exc).__name__}: {exc}"
        return msg, F.message_figure(msg)
    rows = ["| integrator | ‖θ_back − θ_0‖ / ‖θ_0‖ | momentum error | note |", "|---|---|---|---|"]
    for path in result.paths:
        if path.result is None:
            rows.append(f"| {path.integrator} | diverged | diverged | {path.divergence} |")
        else:
            note = path.divergence or ""
            rows.append(
                f"| {path.integrator} | {path.result.theta_error:.3e} "
                f"| {path.result.momentum_error:.3e} | {note} |"
            )
    head = (
        f"{config.steps} steps forward with {LANDSCAPES[config.landscape].label}, "
        f"dt = {config.step_size:g}, "
        "γ = 0, no cap, one fixed batch; then p ← −p, the same number of steps back, p ← −p."
    )
    return head + "\n\n" + "\n".join(rows), F.reversibility_figure(result)


# ---------------------------------------------------------------------- results
def _empty_results(message: str) -> tuple[Any, ...]:
    blank = F.message_figure(message)
    return (
        f"**Results** — {message}",
        None,
        blank,
        blank,
        blank,
        blank,
        gr.update(choices=[], value=None),
        [],
        gr.update(choices=[], value=None),
    )


def _rounded(df: Any) -> Any:
    """A copy of a table with floats shown to 4 significant digits (display only)."""
    if df is None:
        return None
    out = df.copy()
    for col in out.columns:
        if out[col].dtype.kind == "f":
            out[col] = out[col].map(lambda v: float(f"{v:.4g}") if v == v else v)
    return out


def _images(rd: ResultsDir) -> list[tuple[Any, str]]:
    """The PNG figures as in-memory images (read through the path guard, served from memory)."""
    from PIL import Image

    out = []
    for path in rd.figures():
        try:
            with Image.open(path) as im:
                out.append((im.convert("RGB"), path.name))
        except (OSError, ValueError):
            continue
    return out


def results_view(root: ResultsDir | None, relative: str, drift_column: str) -> tuple[Any, ...]:
    """(status, Table 1, drift fig, reversibility fig, cap fig, ablations fig, CSV dropdown,
    PNG figures, run dropdown)."""
    if root is None:
        return _empty_results(
            "no results directory: start the page with `hamopt demo --results DIR`"
        )
    try:
        rd = root.sub(relative or ".")
    except (PathOutsideResultsError, MissingResultError) as exc:
        return _empty_results(f"refused: {exc}")
    notes = []

    def read(name: str) -> Any:
        try:
            return rd.csv(name)
        except MissingResultError:
            notes.append(f"{name} missing")
        except Exception as exc:  # a damaged file is reported, the rest still shows
            notes.append(f"{name} unreadable ({type(exc).__name__}: {exc})")
        return None

    table, drift, rev, cap = (
        read("table.csv"),
        read("drift.csv"),
        read("reversibility.csv"),
        read("cap.csv"),
    )
    drift_fig = (
        F.results_drift_figure(drift, table, drift_column)
        if drift is not None
        else F.message_figure("drift.csv missing")
    )
    rev_fig = (
        F.results_reversibility_figure(rev)
        if rev is not None
        else F.message_figure("reversibility.csv missing")
    )
    cap_fig = F.results_cap_figure(cap) if cap is not None else F.message_figure("cap.csv missing")
    abl = read("ablations.csv")
    abl_fig = (
        F.results_ablation_figure(abl)
        if abl is not None
        else F.message_figure("ablations.csv missing")
    )
    gallery = _images(rd)
    runs = rd.run_ids()
    csvs = rd.csv_names()
    first_csv = "cap.csv" if "cap.csv" in csvs else (csvs[0] if csvs else None)
    status = (
        f"**Results** in `{rd.root}`: {len(runs)} runs with a steps.parquet, "
        f"{len(gallery)} figures."
    )
    if notes:
        status += " " + "; ".join(notes) + "."
    return (
        status,
        _rounded(table),
        drift_fig,
        rev_fig,
        cap_fig,
        abl_fig,
        gr.update(choices=csvs, value=first_csv),
        gallery,
        gr.update(choices=runs, value=runs[0] if runs else None),
    )


def csv_view(root: ResultsDir | None, relative: str, name: str | None) -> tuple[str, Any]:
    """(status, DataFrame) of one CSV at the top of the results directory."""
    if root is None or not name:
        return "", None
    try:
        return f"`{name}`", _rounded(root.sub(relative or ".").csv(name))
    except (PathOutsideResultsError, MissingResultError) as exc:
        return f"**Refused** — {exc}", None
    except Exception as exc:
        return f"**{name} unreadable** — {type(exc).__name__}: {exc}", None


def run_view(root: ResultsDir | None, relative: str, run_id: str | None) -> tuple[str, Any, str]:
    """(status, energy figure, manifest JSON) of one stored run."""
    if root is None or not run_id:
        return "pick a run", F.message_figure("pick a run"), "{}"
    try:
        run = root.sub(relative or ".").run(run_id)
    except (PathOutsideResultsError, MissingResultError) as exc:
        return f"**Refused** — {exc}", F.message_figure(str(exc)), "{}"
    except Exception as exc:
        msg = f"**Run {run_id!r} unreadable** — {type(exc).__name__}: {exc}"
        return msg, F.message_figure(msg), "{}"
    n = len(run.steps)
    status = f"run `{run.run_id}`: {n} steps; status {run.manifest.get('status', 'unknown')}"
    return status, F.run_energy_figure(run), json.dumps(run.manifest, indent=2, default=str)


# ---------------------------------------------------------------------- page
def build_app(results: str | Path | None = None) -> gr.Blocks:
    """The page; ``results`` is the lab results directory the browser may read (nothing else)."""
    root = ResultsDir(results) if results is not None else None
    d = pg.PlaygroundConfig()
    rv_default = "double_well"
    rv_start = LANDSCAPES[rv_default].cls.default_start
    pg.run_trajectory(
        pg.PlaygroundConfig(steps=1)
    )  # pay torch's one-time imports before the first visitor
    with gr.Blocks(title="hamopt demo", analytics_enabled=False) as app:
        gr.Markdown("# hamopt — Hamiltonian optimisers, interactively")
        with gr.Tab("Playground"):
            with gr.Row():
                with gr.Column(scale=1, min_width=260):
                    landscape = gr.Dropdown(
                        LANDSCAPE_CHOICES,
                        value=d.landscape,
                        label="landscape",
                        elem_id="pg-landscape",
                    )
                    optimizer = gr.Dropdown(
                        OPTIMIZER_CHOICES,
                        value=d.optimizer,
                        label="optimiser",
                        elem_id="pg-optimizer",
                    )
                    step_size = gr.Number(
                        d.step_size,
                        label="dt (step size)",
                        elem_id="pg-step-size",
                        info="dt for Leapfrog/Euler, lr for the others; in (0, 10]",
                    )
                    gamma = gr.Number(
                        d.gamma, label="γ damping", elem_id="pg-gamma", info="[0, 100]"
                    )
                    mass = gr.Number(
                        d.mass,
                        label="mass M (inverse mass 1/M)",
                        elem_id="pg-mass",
                        info="[0.001, 1000]",
                    )
                    cap = gr.Number(
                        0, label="energy cap α (0 = off)", elem_id="pg-cap", info="0, or (1, 1e6]"
                    )
                    momentum = gr.Number(
                        d.momentum,
                        label="momentum / β₁",
                        elem_id="pg-momentum",
                        visible=False,
                        info="[0, 1)",
                    )
                    weight_decay = gr.Number(
                        d.weight_decay,
                        label="weight decay",
                        elem_id="pg-wd",
                        visible=False,
                        info="[0, 10]",
                    )
                    eta = gr.Number(
                        d.eta,
                        label="η (ECD)",
                        elem_id="pg-eta",
                        visible=False,
                        info="[0.001, 1e4]; ECDSep: ≥ 1",
                    )
                    f0 = gr.Number(
                        d.f0,
                        label="F0 / v0 (ECD loss floor)",
                        elem_id="pg-f0",
                        visible=False,
                        info="below the landscape's minimum",
                    )
                    nu = gr.Number(
                        d.nu, label="ν (ECD bounce)", elem_id="pg-nu", visible=False, info="[0, 10]"
                    )
                    steps = gr.Number(
                        d.steps,
                        label="steps",
                        precision=0,
                        elem_id="pg-steps",
                        info=f"1 … {pg.MAX_STEPS}",
                    )
                    noise = gr.Number(
                        d.noise,
                        label="noise σ (noisy quadratic)",
                        elem_id="pg-noise",
                        visible=LANDSCAPES[d.landscape].cls.noisy,
                        info="[0, 10]",
                    )
                    with gr.Row():
                        x0 = gr.Number(d.start[0], label="start x", elem_id="pg-x0", min_width=80)
                        y0 = gr.Number(d.start[1], label="start y", elem_id="pg-y0", min_width=80)
                    seed = gr.Number(d.seed, label="seed", precision=0, elem_id="pg-seed")
                    scan_btn = gr.Button("drift vs dt scan", variant="primary", elem_id="pg-scan")
                with gr.Column(scale=3):
                    status = gr.Markdown(elem_id="pg-status")
                    contour = gr.Plot(label="trajectory", elem_id="pg-contour")
                    with gr.Row():
                        energy = gr.Plot(label="H, K, L", elem_id="pg-energy")
                        delta = gr.Plot(label="|ΔH| per step", elem_id="pg-delta")
                    scan_md = gr.Markdown(
                        "Press **drift vs dt scan** to run the current settings at six step sizes "
                        "from dt/4 to dt and fit log drift on log dt.",
                        elem_id="pg-scan-status",
                    )
                    scan_plot = gr.Plot(label="drift vs step size", elem_id="pg-scan-plot")
            controls = [
                landscape,
                optimizer,
                step_size,
                gamma,
                mass,
                cap,
                momentum,
                weight_decay,
                steps,
                noise,
                x0,
                y0,
                seed,
                eta,
                f0,
                nu,
            ]
            # .input: a user's change (a value set by suggest_and_run does not fire it again)
            numeric = [c for c in controls if c not in (landscape, optimizer)]
            hyper = dict(
                zip(
                    HYPER_FIELDS,
                    (gamma, mass, cap, momentum, weight_decay, eta, f0, nu, noise),
                    strict=True,
                )
            )
            gr.on(
                triggers=[c.input for c in numeric],
                fn=playground_view,
                inputs=controls,
                outputs=[status, contour, energy, delta],
                trigger_mode="always_last",
                show_progress="hidden",
            )
            gr.on(
                triggers=[landscape.input, optimizer.input],
                fn=suggest_and_run,
                inputs=controls,
                outputs=[
                    step_size,
                    steps,
                    x0,
                    y0,
                    *(hyper[name] for name in HYPER_FIELDS),
                    status,
                    contour,
                    energy,
                    delta,
                ],
                trigger_mode="always_last",
                show_progress="hidden",
            )
            scan_btn.click(
                drift_scan_view,
                inputs=controls,
                outputs=[scan_md, scan_plot],
                show_progress="minimal",
            )
            app.load(
                playground_view,
                inputs=controls,
                outputs=[status, contour, energy, delta],
                show_progress="hidden",
            )

        with gr.Tab("Reversibility"):
            with gr.Row():
                with gr.Column(scale=1, min_width=260):
                    rv_landscape = gr.Dropdown(
                        LANDSCAPE_CHOICES,
                        value=rv_default,
                        label="landscape",
                        elem_id="rv-landscape",
                    )
                    rv_dt = gr.Number(0.02, label="dt", elem_id="rv-dt")
                    rv_steps = gr.Number(
                        200, label="N steps each way", precision=0, elem_id="rv-steps"
                    )
                    rv_mass = gr.Number(1.0, label="mass M", elem_id="rv-mass")
                    rv_noise = gr.Number(
                        0.1, label="noise σ (noisy quadratic; one fixed batch)", elem_id="rv-noise"
                    )
                    with gr.Row():
                        rv_x0 = gr.Number(
                            rv_start[0], label="start x", min_width=80, elem_id="rv-x0"
                        )
                        rv_y0 = gr.Number(
                            rv_start[1], label="start y", min_width=80, elem_id="rv-y0"
                        )
                    rv_seed = gr.Number(0, label="seed", precision=0, elem_id="rv-seed")
                with gr.Column(scale=3):
                    rv_status = gr.Markdown(elem_id="rv-status")
                    rv_plot = gr.Plot(label="forward and return paths", elem_id="rv-plot")
            rv_controls = [rv_landscape, rv_dt, rv_steps, rv_mass, rv_noise, rv_x0, rv_y0, rv_seed]
            gr.on(
                triggers=[c.input for c in rv_controls if c is not rv_landscape],
                fn=reversibility_view,
                inputs=rv_controls,
                outputs=[rv_status, rv_plot],
                trigger_mode="always_last",
                show_progress="hidden",
            )
            rv_landscape.input(
                landscape_and_reversibility,
                inputs=rv_controls,
                outputs=[rv_x0, rv_y0, rv_status, rv_plot],
                trigger_mode="always_last",
                show_progress="hidden",
            )
            app.load(
                reversibility_view,
                inputs=rv_controls,
                outputs=[rv_status, rv_plot],
                show_progress="hidden",
            )

        with gr.Tab("Results"):
            root_state = gr.State(root)
            with gr.Row():
                rel = gr.Textbox(
                    ".",
                    label=f"directory inside {root.root if root else '(no --results given)'}",
                    elem_id="rs-path",
                    scale=3,
                )
                column = gr.Radio(
                    ["drift_int", "drift_traj", "drift_resampling"],
                    value="drift_int",
                    label="drift column",
                    elem_id="rs-column",
                    scale=2,
                )
                load = gr.Button("load", elem_id="rs-load", scale=1)
            rs_status = gr.Markdown(elem_id="rs-status")
            table = gr.Dataframe(
                label="Table 1: drift slope per optimiser and band",
                elem_id="rs-table",
                interactive=False,
            )
            drift_plot = gr.Plot(label="drift vs step size", elem_id="rs-drift")
            with gr.Row():
                rev_plot = gr.Plot(label="reversibility", elem_id="rs-rev")
                cap_plot = gr.Plot(label="energy cap", elem_id="rs-cap")
            abl_plot = gr.Plot(label="memory ablations", elem_id="rs-ablations")
            with gr.Row():
                csv_pick = gr.Dropdown(
                    [], label="any table of the directory", elem_id="rs-csv", scale=3
                )
                csv_status = gr.Markdown(elem_id="rs-csv-status")
            csv_table = gr.Dataframe(elem_id="rs-csv-table", interactive=False, show_label=False)
            gallery = gr.Gallery(
                label="figures/*.png", elem_id="rs-gallery", columns=3, height="auto"
            )
            with gr.Row():
                run_pick = gr.Dropdown([], label="run", elem_id="rs-run", scale=3)
            run_status = gr.Markdown(elem_id="rs-run-status")
            run_plot = gr.Plot(label="run energy series", elem_id="rs-run-plot")
            manifest = gr.Code(label="manifest.json", language="json", elem_id="rs-manifest")
            rs_outputs = [
                rs_status,
                table,
                drift_plot,
                rev_plot,
                cap_plot,
                abl_plot,
                csv_pick,
                gallery,
                run_pick,
            ]
            for trigger in (load.click, rel.submit, column.change):
                trigger(
                    results_view,
                    inputs=[root_state, rel, column],
                    outputs=rs_outputs,
                    show_progress="minimal",
                )
            csv_pick.change(
                csv_view, inputs=[root_state, rel, csv_pick], outputs=[csv_status, csv_table]
            )
            run_pick.change(
                run_view,
                inputs=[root_state, rel, run_pick],
                outputs=[run_status, run_plot, manifest],
            )
            app.load(
                results_view,
                inputs=[root_state, rel, column],
                outputs=rs_outputs,
                show_progress="hidden",
            )
    return app
