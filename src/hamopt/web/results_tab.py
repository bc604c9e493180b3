"""The Results tab: its tables and plots of a lab results directory (``--results``), and the
handlers that read it through :class:`~hamopt.web.results.ResultsDir`'s path guard and return what
to show (they never raise: a refused path or a missing or damaged file becomes a message)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import gradio as gr

from .lab_figures import (
    results_ablation_figure,
    results_cap_figure,
    results_drift_figure,
    results_reversibility_figure,
)
from .plot_style import message_figure
from .results import MissingResultError, PathOutsideResultsError, ResultsDir
from .stability_figures import run_figure

__all__ = ["csv_view", "results_tab", "results_view", "run_view"]

# the tables the tab draws, in the order they are read (and a missing one is noted)
DRAWN_TABLES = ("table.csv", "drift.csv", "reversibility.csv", "cap.csv", "ablations.csv")


def _empty_results(message: str) -> tuple[Any, ...]:
    blank = message_figure(message)
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


def _drawn(tables: dict[str, Any], name: str, draw: Callable[[Any], Any]) -> Any:
    """``draw(table)`` of the CSV ``name``, or a figure that says it is missing."""
    table = tables[name]
    return message_figure(f"{name} missing") if table is None else draw(table)


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

    tables = {name: read(name) for name in DRAWN_TABLES}
    figures = (
        _drawn(
            tables,
            "drift.csv",
            lambda drift: results_drift_figure(drift, tables["table.csv"], drift_column),
        ),
        _drawn(tables, "reversibility.csv", results_reversibility_figure),
        _drawn(tables, "cap.csv", results_cap_figure),
        _drawn(tables, "ablations.csv", results_ablation_figure),
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
        _rounded(tables["table.csv"]),
        *figures,
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
        return "pick a run", message_figure("pick a run"), "{}"
    try:
        run = root.sub(relative or ".").run(run_id)
    except (PathOutsideResultsError, MissingResultError) as exc:
        return f"**Refused** — {exc}", message_figure(str(exc)), "{}"
    except Exception as exc:
        msg = f"**Run {run_id!r} unreadable** — {type(exc).__name__}: {exc}"
        return msg, message_figure(msg), "{}"
    n = len(run.steps)
    status = f"run `{run.run_id}`: {n} steps; status {run.manifest.get('status', 'unknown')}"
    return status, run_figure(root.sub(relative or "."), run), json.dumps(run.manifest, indent=2, default=str)


def results_tab(app: gr.Blocks, root: ResultsDir | None) -> None:
    """The Results tab inside ``app`` for the directory ``root`` (None: no ``--results`` given):
    tables, plots, figures, a run's series, and their events (a read on load)."""
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
                [("ΔH^int (same batch)", "drift_int"), ("ΔH^traj (across batches)", "drift_traj"),
                 ("δ (resampling)", "drift_resampling")],
                value="drift_int",
                label="drift column",
                elem_id="rs-column",
                scale=2,
            )
            load = gr.Button("load", elem_id="rs-load", scale=1)
        status = gr.Markdown(elem_id="rs-status")
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
            label="figures/*.png", elem_id="rs-gallery", columns=3, height="auto", object_fit="contain"
        )
        with gr.Row():
            run_pick = gr.Dropdown([], label="run", elem_id="rs-run", scale=3)
        run_status = gr.Markdown(elem_id="rs-run-status")
        run_plot = gr.Plot(label="run energy series", elem_id="rs-run-plot")
        manifest = gr.Code(label="manifest.json", language="json", elem_id="rs-manifest")
        outputs = [
            status,
            table,
            drift_plot,
            rev_plot,
            cap_plot,
            abl_plot,
            csv_pick,
            gallery,
            run_pick,
        ]
        inputs = [root_state, rel, column]
        for trigger in (load.click, rel.submit, column.change):
            trigger(results_view, inputs=inputs, outputs=outputs, show_progress="minimal")
        csv_pick.change(
            csv_view, inputs=[root_state, rel, csv_pick], outputs=[csv_status, csv_table]
        )
        run_pick.change(
            run_view,
            inputs=[root_state, rel, run_pick],
            outputs=[run_status, run_plot, manifest],
        )
        app.load(results_view, inputs=inputs, outputs=outputs, show_progress="hidden")
