"""The Reversibility tab: its controls and plot, and the handlers that run
:func:`~hamopt.playground.reversibility` (Leapfrog and Euler round trips side by side) and return
the markdown table and figure to show (they never raise)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import gradio as gr

from .. import families
from .. import playground as pg
from ..landscapes import LANDSCAPES
from .controls import (
    LANDSCAPE_CHOICES,
    config_from_controls,
    failure_message,
    invalid_input_message,
)
from .playground_figures import reversibility_figure
from .plot_style import message_figure, short_number

__all__ = ["landscape_and_reversibility", "reversibility_tab", "reversibility_view"]

DEFAULT_LANDSCAPE = "double_well"
# The round trip integrates Leapfrog and Euler; the config carries Leapfrog's playground entry.
ROUND_TRIP_OPTIMIZER = families.LEAPFROG.playground.key


def reversibility_view(
    landscape: str, step_size: Any, steps: Any, mass: Any, noise: Any, x0: Any, y0: Any, seed: Any
) -> tuple[str, Any]:
    """Markdown table of the round-trip errors per integrator, and the side-by-side paths."""
    try:
        config = config_from_controls(
            landscape, ROUND_TRIP_OPTIMIZER, step_size, 0.0, mass, None, 0.9, 0.0, steps, noise, x0, y0, seed
        )
        result = pg.reversibility(config)
    except pg.PlaygroundInputError as exc:
        return invalid_input_message(exc), message_figure(str(exc))
    except Exception as exc:
        msg = failure_message("Round trip", exc)
        return msg, message_figure(msg)
    rows = ["| integrator | θ error | p error | note |", "|---|---|---|---|"]
    for path in result.paths:
        if path.result is None:
            rows.append(f"| {path.integrator} | diverged | diverged | {path.divergence} |")
        else:
            note = path.divergence or ""
            rows.append(
                f"| {path.integrator} | {short_number(path.result.theta_error, 3)} "
                f"| {short_number(path.result.momentum_error, 3)} | {note} |"
            )
    head = (
        f"{config.steps} steps forward with {LANDSCAPES[config.landscape].label}, "
        f"dt = {config.step_size:.4g}, "
        "γ = 0, no cap, one fixed batch; then p ← −p, the same number of steps back, p ← −p."
    )
    legend = "θ error = ‖θ_back − θ_0‖ / ‖θ_0‖; p error: the same for the momentum."
    text = head + "\n\n" + "\n".join(rows) + "\n\n" + legend + _unexpected_error_note(result)
    return text, reversibility_figure(result)


# a Leapfrog round trip in float64 returns to θ_0 to about 1e-12 unless rounding is amplified
UNEXPECTED_ERROR = 1e-6


def _unexpected_error_note(result: Any) -> str:
    """When Leapfrog's round trip misses θ_0 by more than :data:`UNEXPECTED_ERROR`: why (rounding
    amplified by chaotic motion), with the error at a few shorter N to show its growth."""
    lf = result.leapfrog.result
    if lf is None or not lf.theta_error > UNEXPECTED_ERROR:
        return ""
    n = result.config.steps
    shorter = sorted({max(1, n // k) for k in (64, 16, 4)} - {n})
    growth = []
    for steps in shorter:
        short = pg.reversibility(replace(result.config, steps=steps)).leapfrog.result
        if short is not None:
            growth.append(f"N = {steps}: {short_number(short.theta_error)}")
    growth.append(f"N = {n}: {short_number(lf.theta_error)}")
    return (
        "\n\n**Why Leapfrog misses θ_0 here.** Leapfrog is exactly reversible only in exact arithmetic. "
        "Each step rounds θ and p to float64, and at this dt the motion is chaotic: nearby paths separate "
        "exponentially, so the rounding of the way out is amplified on the way back. The error grows "
        f"with N — {'; '.join(growth)} — instead of staying at rounding level (≈ 1e-15). A smaller dt "
        "or fewer steps brings it back."
    )


def landscape_and_reversibility(landscape: str, *rest: Any) -> tuple[Any, ...]:
    """A new landscape on the reversibility tab: its default start, then the round trips."""
    info = LANDSCAPES.get(landscape)
    step_size, steps, mass, noise, x0, y0, seed = rest
    if info is None:
        return (gr.update(), gr.update(), *reversibility_view(landscape, *rest))
    x0, y0 = info.cls.default_start
    view = reversibility_view(landscape, step_size, steps, mass, noise, x0, y0, seed)
    return (gr.update(value=x0), gr.update(value=y0), *view)


def reversibility_tab(app: gr.Blocks) -> None:
    """The Reversibility tab inside ``app``: controls, plot, and their events (a run on load)."""
    start = LANDSCAPES[DEFAULT_LANDSCAPE].cls.default_start
    with gr.Tab("Reversibility"):
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                landscape = gr.Dropdown(
                    LANDSCAPE_CHOICES,
                    value=DEFAULT_LANDSCAPE,
                    label="landscape",
                    elem_id="rv-landscape",
                )
                dt = gr.Number(0.02, label="dt", elem_id="rv-dt")
                steps = gr.Number(200, label="N steps each way", precision=0, elem_id="rv-steps")
                mass = gr.Number(1.0, label="mass M", elem_id="rv-mass")
                noise = gr.Number(
                    0.1, label="noise σ (noisy quadratic; one fixed batch)", elem_id="rv-noise"
                )
                with gr.Row():
                    x0 = gr.Number(start[0], label="start x", min_width=80, elem_id="rv-x0")
                    y0 = gr.Number(start[1], label="start y", min_width=80, elem_id="rv-y0")
                seed = gr.Number(0, label="seed", precision=0, elem_id="rv-seed")
            with gr.Column(scale=3):
                status = gr.Markdown(elem_id="rv-status")
                plot = gr.Plot(label="forward and return paths", elem_id="rv-plot")
        controls = [landscape, dt, steps, mass, noise, x0, y0, seed]
        # busy timer on every recompute; one at a time, superseded changes dropped (always_last)
        gr.on(
            triggers=[c.input for c in controls if c is not landscape],
            fn=reversibility_view,
            inputs=controls,
            outputs=[status, plot],
            trigger_mode="always_last",
            show_progress="minimal",
            concurrency_limit=1,
            concurrency_id="reversibility",
        )
        landscape.input(
            landscape_and_reversibility,
            inputs=controls,
            outputs=[x0, y0, status, plot],
            trigger_mode="always_last",
            show_progress="minimal",
            show_progress_on=[status, plot],
            concurrency_limit=1,
            concurrency_id="reversibility",
        )
        app.load(
            reversibility_view, inputs=controls, outputs=[status, plot], show_progress="hidden"
        )
