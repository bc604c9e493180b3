"""The Playground tab: its controls and plots, and the handlers that run
:func:`~hamopt.playground.run_trajectory` or :func:`~hamopt.playground.drift_scan` on the control
values and return the markdown and figures to show (they never raise)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

from .. import playground as pg
from ..landscapes import LANDSCAPES
from .controls import (
    LANDSCAPE_CHOICES,
    OPTIMIZER_CHOICES,
    config_from_controls,
    failure_message,
    invalid_input_message,
)
from .playground_figures import contour_figure, delta_h_figure, drift_scan_figure, energy_figure
from .plot_push import PUSH_JS, figures_payload
from .plot_style import message_figure

__all__ = [
    "CONTROL_NAMES",
    "HYPER_FIELDS",
    "INVALID_CLASS",
    "MARKED_BOXES",
    "drift_scan_view",
    "marked_boxes",
    "playground_event",
    "playground_push",
    "playground_tab",
    "playground_view",
    "suggest_and_push",
    "suggest_and_run",
    "suggestion_view",
]

# the controls in the order the handlers take them (config_from_controls' arguments)
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
# hyperparameter controls shown only for the optimisers that read them (OptimizerInfo.uses)
# (noise: shown on the noisy landscape only)
HYPER_FIELDS = ("gamma", "mass", "cap", "momentum", "weight_decay", "eta", "f0", "nu", "noise")
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
# the numeric boxes from the step size to the noise, in page order: name, label, element id, hint
NUMBER_BOXES = (
    (
        "step_size",
        "dt (step size)",
        "pg-step-size",
        "dt for Leapfrog/Euler, lr for the others; in (0, 10]",
    ),
    ("gamma", "γ damping", "pg-gamma", "[0, 100]"),
    ("mass", "mass M (inverse mass 1/M)", "pg-mass", "[0.001, 1000]"),
    ("cap", "energy cap α (0 = off)", "pg-cap", "0, or (1, 1e6]"),
    ("momentum", "momentum / β₁", "pg-momentum", "[0, 1)"),
    ("weight_decay", "weight decay", "pg-wd", "[0, 10]"),
    ("eta", "η (ECD)", "pg-eta", "[0.001, 1e4]; ECDSep: ≥ 1"),
    ("f0", "F0 / v0 (ECD loss floor)", "pg-f0", "below the landscape's minimum"),
    ("nu", "ν (ECD bounce)", "pg-nu", "[0, 10]"),
    ("steps", "steps", "pg-steps", f"1 … {pg.MAX_STEPS}"),
    ("noise", "noise σ (noisy quadratic)", "pg-noise", "[0, 10]"),
)


def _fmt(value: float | None, spec: str = ".4g") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, spec)


# ---------------------------------------------------------------------- handlers
def _timed(run: Callable[[pg.PlaygroundConfig], Any], controls: Sequence[Any]) -> tuple[Any, float]:
    """``run`` on the validated config of the control values, and its wall time in ms."""
    config = config_from_controls(*controls)
    t0 = time.perf_counter()
    result = run(config)
    return result, 1000 * (time.perf_counter() - t0)


def _run_view(controls: Sequence[Any]) -> tuple[str, tuple[Any, Any, Any] | None, str | None]:
    """(status, the three figures or None, the invalid field or None) for the control values."""
    try:
        traj, ms = _timed(pg.run_trajectory, controls)
    except pg.PlaygroundInputError as exc:
        return invalid_input_message(exc), None, exc.field
    except Exception as exc:  # a page must never freeze on an unexpected failure
        return failure_message("Run", exc), None, None
    return _summary(traj, ms), (contour_figure(traj), energy_figure(traj), delta_h_figure(traj)), None


def playground_view(*controls: Any) -> tuple[str, Any, Any, Any]:
    """Status markdown, contour, energy and |ΔH| figures for the control values (on bad input or a
    failure: the message, drawn in the first figure)."""
    status, figures, _ = _run_view(controls)
    if figures is None:
        return status, message_figure(status.replace("**", "")), message_figure("—"), message_figure("—")
    return (status, *figures)


def playground_event(*controls: Any) -> tuple[Any, ...]:
    """:func:`playground_view` as the page shows it: status, the three plots, then a class update
    per number box (:data:`MARKED_BOXES`). On bad input or a failure the plots keep their last
    drawing (``gr.skip()``) and the offending box is marked."""
    status, figures, field = _run_view(controls)
    plots = figures if figures is not None else (gr.skip(), gr.skip(), gr.skip())
    return (status, *plots, *marked_boxes(field))


PLOT_IDS = ("pg-contour", "pg-energy", "pg-delta")


def _payload(figures: Sequence[Any] | None, field: str | None) -> str:
    """The figures and the box marks as :data:`~hamopt.web.plot_push.PUSH_JS` reads them."""
    bad = _FIELD_BOXES.get(field or "", (field,))
    return figures_payload(
        None if figures is None else dict(zip(PLOT_IDS, figures, strict=True)),
        invalid=tuple(BOX_IDS[name] for name in MARKED_BOXES if name in bad),
        markable=tuple(BOX_IDS[name] for name in MARKED_BOXES),
        mark_class=INVALID_CLASS,
    )


def playground_push(*controls: Any) -> tuple[str, str]:
    """:func:`playground_event` as the page wires it: the status, and one JSON text for
    :data:`~hamopt.web.plot_push.PUSH_JS` with the three figures (none on bad input or a failure:
    the plots keep their last drawing) and the box to mark."""
    status, figures, field = _run_view(controls)
    return status, _payload(figures, field)


# the boxes an invalid-input message can point at (config field → boxes), in output order
MARKED_BOXES = ("step_size", "gamma", "mass", "cap", "momentum", "weight_decay", "eta", "f0", "nu",
                "steps", "noise", "x0", "y0", "seed")
_FIELD_BOXES = {"start": ("x0", "y0")}
# their element ids
BOX_IDS = {**{name: elem_id for name, _, elem_id, _ in NUMBER_BOXES},
           "x0": "pg-x0", "y0": "pg-y0", "seed": "pg-seed"}
INVALID_CLASS = "hamopt-invalid"


def marked_boxes(field: str | None) -> tuple[Any, ...]:
    """One update per :data:`MARKED_BOXES` box: the invalid class on the boxes of ``field``, none
    on the others."""
    bad = _FIELD_BOXES.get(field or "", (field,))
    return tuple(gr.update(elem_classes=[INVALID_CLASS] if name in bad else []) for name in MARKED_BOXES)


def _summary(traj: pg.Trajectory, ms: float) -> str:
    c = traj.config
    used = ", ".join(
        f"{SHORT_NAMES.get(k, k)} = {'off' if getattr(c, k) is None else _fmt(getattr(c, k))}"
        for k in traj.config.info.uses
    )
    head = f"**{traj.optimizer_label}** {traj.step_label} = {c.step_size:.4g}" + (
        f", {used}" if used else ""
    )
    lines = [f"{head}; {traj.steps_run} steps in {ms:.0f} ms."]
    if traj.diverged:
        lines.append(
            f"⚠️ **Diverged at step {traj.diverged_at}**: {traj.divergence}. "
            "The path is drawn up to the last finite point."
        )
    cap = (f"; cap engaged {traj.cap_engagements}× of {traj.steps_run} steps"
           if "cap" in c.info.uses and c.cap is not None else "")
    lines.append(
        f"L: {_fmt(traj.loss[0])} → {_fmt(traj.loss[-1])}; "
        f"H: {_fmt(traj.hamiltonian[0])} → {_fmt(traj.hamiltonian[-1])}{cap}."
    )
    drift = f"drift (tail median, last 20 %): |ΔH^int| = {_fmt(traj.drift_int, '.3e')}"
    if traj.noisy:
        drift += f", |ΔH^traj| = {_fmt(traj.drift_traj, '.3e')}"
        drift += f", |δ| = {_fmt(traj.drift_resampling, '.3e')}"
    lines.append(drift + f"; energy error |H−H0| = {_fmt(traj.energy_error, '.3e')}.")
    return "\n\n".join(lines)


def _fit_summary(name: str, fit: Any) -> str:
    if fit is None:
        return f"- {name}: no fit"
    return (
        f"- {name}: slope **{fit.slope:.3f}**, "
        f"95 % CI [{_fmt(fit.ci_low, '.3f')}, {_fmt(fit.ci_high, '.3f')}], "
        f"R² = {fit.r2:.4f}, n = {fit.n}"
    )


def drift_scan_view(*controls: Any) -> tuple[str, Any]:
    """Markdown with the fitted slopes and the drift-vs-step-size figure."""
    try:
        scan, ms = _timed(pg.drift_scan, controls)
    except pg.PlaygroundInputError as exc:
        return invalid_input_message(exc), message_figure(str(exc))
    except Exception as exc:
        msg = failure_message("Scan", exc)
        return msg, message_figure(msg)
    sizes = ", ".join(f"{s:.3g}" for s in scan.step_sizes)
    parts = [
        f"**Drift vs {scan.step_label}** ({len(scan.step_sizes)} step sizes: {sizes}; "
        f"one point each; {ms:.0f} ms)",
        _fit_summary("|ΔH^int| (same batch)", scan.fit_int),
    ]
    if scan.noisy:
        parts.append(_fit_summary("|ΔH^traj| (cross batch)", scan.fit_traj))
    parts.append(_fit_summary("energy error |H−H0|", scan.fit_error))
    if scan.fit_note:
        parts.append(f"⚠️ {scan.fit_note}")
    return "\n".join(parts), drift_scan_figure(scan)


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
    """Whether the control ``name`` is shown for the config's landscape and optimiser."""
    if name == "noise":
        return LANDSCAPES[config.landscape].cls.noisy
    return name in config.info.uses


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


def suggest_and_push(*controls: Any) -> tuple[Any, ...]:
    """:func:`suggest_and_run` with the figures as :func:`playground_push` sends them."""
    *updates, status, contour, energy, delta = suggest_and_run(*controls)
    return (*updates, status, _payload((contour, energy, delta), None))


# ---------------------------------------------------------------------- layout
def _control_column(d: pg.PlaygroundConfig) -> tuple[dict[str, Any], gr.Button]:
    """The controls (by :data:`CONTROL_NAMES` name) for the default config ``d``, and the scan
    button; a hyperparameter box is shown as :func:`_shown` decides for ``d``."""
    boxes: dict[str, Any] = {
        "landscape": gr.Dropdown(
            LANDSCAPE_CHOICES, value=d.landscape, label="landscape", elem_id="pg-landscape"
        ),
        "optimizer": gr.Dropdown(
            OPTIMIZER_CHOICES, value=d.optimizer, label="optimiser", elem_id="pg-optimizer"
        ),
    }
    for name, label, elem_id, hint in NUMBER_BOXES:
        boxes[name] = gr.Number(
            0 if name == "cap" else getattr(d, name),  # the box's 0 is the config's None (no cap)
            label=label,
            elem_id=elem_id,
            info=hint,
            visible=name not in HYPER_FIELDS or _shown(name, d),
            precision=0 if name == "steps" else None,
        )
    with gr.Row():
        boxes["x0"] = gr.Number(d.start[0], label="start x", elem_id="pg-x0", min_width=80)
        boxes["y0"] = gr.Number(d.start[1], label="start y", elem_id="pg-y0", min_width=80)
    boxes["seed"] = gr.Number(d.seed, label="seed", precision=0, elem_id="pg-seed")
    scan = gr.Button("drift vs dt scan", variant="primary", elem_id="pg-scan")
    return boxes, scan


def playground_tab(app: gr.Blocks) -> None:
    """The Playground tab inside ``app``: controls, plots, and their events (a run on load)."""
    d = pg.PlaygroundConfig()
    with gr.Tab("Playground"):
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                boxes, scan_btn = _control_column(d)
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
        # the figures of a recompute, as JSON text for PUSH_JS (never shown)
        pushed = gr.Textbox(visible=False)
        controls = [boxes[name] for name in CONTROL_NAMES]
        plots = [status, contour, energy, delta]
        # .input: a user's change (a value set by suggest_and_run does not fire it again).
        # Every recompute shows a busy timer on its outputs (show_progress="minimal"); one run at
        # a time for the whole tab, and while one runs only the latest change waits (always_last):
        # superseded requests are dropped, never drawn out of order. The plots drawn on page load
        # are then redrawn in place (Plotly.react, see plot_push).
        gr.on(
            triggers=[boxes[n].input for n in CONTROL_NAMES if n not in ("landscape", "optimizer")],
            fn=playground_push,
            inputs=controls,
            outputs=[status, pushed],
            trigger_mode="always_last",
            show_progress="minimal",
            show_progress_on=plots,
            concurrency_limit=1,
            concurrency_id="playground",
        ).then(None, inputs=[pushed], js=PUSH_JS, show_progress="hidden")
        suggested = [boxes[n] for n in ("step_size", "steps", "x0", "y0", *HYPER_FIELDS)]
        gr.on(
            triggers=[boxes["landscape"].input, boxes["optimizer"].input],
            fn=suggest_and_push,
            inputs=controls,
            outputs=[*suggested, status, pushed],
            trigger_mode="always_last",
            show_progress="minimal",
            show_progress_on=plots,
            concurrency_limit=1,
            concurrency_id="playground",
        ).then(None, inputs=[pushed], js=PUSH_JS, show_progress="hidden")
        scan_btn.click(
            drift_scan_view,
            inputs=controls,
            outputs=[scan_md, scan_plot],
            show_progress="minimal",
        )
        app.load(playground_view, inputs=controls, outputs=plots, show_progress="hidden")
