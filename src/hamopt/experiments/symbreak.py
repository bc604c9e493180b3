r"""The symmetry-breaking study: optimisers × attention variants × seeds on a GPT, with the
validation loss, the energy record and the Noether charges of every step.

Presets (:data:`PRESETS`):

* ``symbreak-tiny`` (CPU): the ``tiny`` GPT (4 layers, 4 heads, width 128, context 128, bytes)
  on the offline standard-library corpus (:mod:`hamopt.data.text`), AdamW, SGD-momentum, ECDq1
  and Leapfrog × {``symmetric``, ``bq+bv``} × 3 seeds, a short fixed budget of steps;
* ``symbreak-124m`` (GPU): the ``124m`` GPT on uint16 token shards (``--data DIR`` with
  ``train*.bin`` and ``val*.bin``; see :mod:`hamopt.data.text` for the format), same grid.

Each run ``r`` trains from seed-determined weights; batch ``t`` and the attention-bias draw of
step ``t`` are pure functions of ``(seed, t)`` (the same draw serves both gradient evaluations of
an exact Leapfrog step and the tracker's loss-after pass). Every step records the
:class:`~hamopt.energy.StepRecord` (loss, K, H, ΔH^int, grad norm, cap) and, from
:class:`~hamopt.diagnostics.noether.NoetherMonitor`, the total charge norms
``‖J_QK‖ = sqrt(Σ_heads ‖J_QK,h‖_F²)`` (likewise ``‖J_VO‖``), their charge fractions
``‖J‖ / (2‖X‖‖P‖)`` and the momentum source; every ``eval_every`` steps the validation loss
(eval mode: biases at their means; nats per token) on fixed windows.

Store layout (the lab's): ``DIR/runs/<run_id>/manifest.json`` (config, seed, corpus hash,
versions, wall time, status) and ``DIR/runs/<run_id>/steps.parquet`` (one row per step, columns
:data:`COLUMNS`); a run with a manifest is done and is skipped on a rerun. Analysis writes
``DIR/table.csv`` (per optimiser and variant: final validation loss, tail-median charge norms and
fractions, mean and 95 % t-interval over seeds), ``DIR/curves.png`` (validation loss),
``DIR/charges.png`` (‖J_QK‖, ‖J_VO‖ per step) and ``DIR/report.html``.
"""

from __future__ import annotations

import html
import json
import math
import platform
import statistics
import sys
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "COLUMNS",
    "PRESETS",
    "RunConfig",
    "SymbreakPreset",
    "analyse",
    "execute_run",
    "plan_runs",
    "run_preset",
]

OPTIMIZERS = ("adamw", "sgd-momentum", "ecdq1", "leapfrog")
COLUMNS = (
    "step",
    "loss",
    "loss_after",
    "kinetic",
    "hamiltonian",
    "delta_h_int",
    "grad_norm",
    "cap_engaged",
    "val_loss",
    "j_qk_norm",
    "j_vo_norm",
    "j_qk_rel",
    "j_vo_rel",
    "rescale_norm",
    "wall_s",
)
BIAS_STREAM = 3


@dataclass(frozen=True)
class SymbreakPreset:
    """A study grid. ``hyper`` maps optimiser name → keyword arguments of its constructor."""

    name: str
    model: str
    model_overrides: dict[str, Any]
    steps: int
    batch_size: int
    context: int
    eval_every: int
    val_windows: int
    hyper: dict[str, dict[str, Any]]
    optimizers: tuple[str, ...] = OPTIMIZERS
    variants: tuple[str, ...] = ("symmetric", "bq+bv")
    seeds: tuple[int, ...] = (0, 1, 2)
    data: str = "stdlib"
    device: str = "cpu"
    threads: int | None = None


PRESETS: dict[str, SymbreakPreset] = {
    "symbreak-tiny": SymbreakPreset(
        name="symbreak-tiny",
        model="tiny",
        model_overrides={},
        steps=120,
        batch_size=8,
        context=64,
        eval_every=20,
        val_windows=32,
        threads=1,
        hyper={
            "adamw": dict(lr=3e-3, betas=(0.9, 0.95), weight_decay=0.0),
            "sgd-momentum": dict(lr=0.03, momentum=0.9),
            "ecdq1": dict(lr=1.0, eta=100.0, F0=0.0, nu=0.1),
            "leapfrog": dict(lr=0.7, gamma=0.3, mode="streaming"),
        },
    ),
    "symbreak-124m": SymbreakPreset(
        name="symbreak-124m",
        model="124m",
        model_overrides={},
        steps=2000,
        batch_size=16,
        context=512,
        eval_every=100,
        val_windows=256,
        data="shards",
        device="cuda",
        hyper={
            "adamw": dict(lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1),
            "sgd-momentum": dict(lr=0.1, momentum=0.9),
            "ecdq1": dict(lr=1.0, eta=100.0, F0=2.0, nu=0.1),
            "leapfrog": dict(lr=1.0, gamma=0.1, mode="streaming"),
        },
    ),
}


@dataclass(frozen=True)
class RunConfig:
    """One run of a preset's grid."""

    run_id: str
    preset: str
    optimizer: str
    variant: str
    seed: int
    hyper: dict[str, Any] = field(default_factory=dict)


def plan_runs(preset: SymbreakPreset) -> list[RunConfig]:
    """The grid in a fixed order: optimiser, variant, seed."""
    runs = []
    for opt in preset.optimizers:
        if opt not in OPTIMIZERS:
            raise ValueError(
                f"optimizers: unknown optimiser {opt!r}; known: {', '.join(OPTIMIZERS)}"
            )
        for variant in preset.variants:
            for seed in preset.seeds:
                rid = f"{opt}__{variant.replace('+', '-')}__s{seed}"
                runs.append(
                    RunConfig(rid, preset.name, opt, variant, seed, dict(preset.hyper[opt]))
                )
    return runs


def make_optimizer(
    name: str, params: Any, hyper: dict[str, Any], seed: int
) -> torch.optim.Optimizer:
    """The optimiser of a run (ECDq1 gets the run's seed for its bounces)."""
    from .. import ECDq1, Leapfrog

    params = list(params)
    if name == "adamw":
        return torch.optim.AdamW(params, **hyper)
    if name == "sgd-momentum":
        return torch.optim.SGD(params, **hyper)
    if name == "ecdq1":
        return ECDq1(params, seed=seed, **hyper)
    if name == "leapfrog":
        return Leapfrog(params, **hyper)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r}")


def _versions() -> dict[str, str]:
    out = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    try:
        from importlib.metadata import version

        out["hamopt"] = version("hamopt")
    except Exception:  # pragma: no cover
        out["hamopt"] = "unknown"
    return out


# ---------------------------------------------------------------------- data
@dataclass(frozen=True)
class StudyData:
    """Training batches (``batch(t)``), fixed validation batches and the data manifest."""

    batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]]
    validation: list[tuple[torch.Tensor, torch.Tensor]]
    manifest: dict[str, Any]
    vocab_size: int


def load_study_data(preset: SymbreakPreset, seed: int, data_dir: str | Path | None) -> StudyData:
    from ..data.text import TextBatches, TokenShardBatches, load_text_corpus, validation_batches

    if preset.data == "stdlib":
        if data_dir is not None:
            raise ValueError(
                f"data_dir applies only to shard presets; {preset.name} uses the stdlib corpus"
            )
        corpus = load_text_corpus("stdlib")
        train = TextBatches(
            corpus.train, context=preset.context, batch_size=preset.batch_size, seed=seed
        )
        val = validation_batches(
            corpus.val,
            context=preset.context,
            batch_size=preset.batch_size,
            max_windows=preset.val_windows,
        )
        return StudyData(train.batch, val, corpus.manifest(), corpus.vocab_size)
    if data_dir is None:
        raise ValueError(
            f"data_dir is required for {preset.name}: a directory with *train*.bin and "
            "*val*.bin shards"
        )
    root = Path(data_dir)
    train_files, val_files = sorted(root.glob("*train*.bin")), sorted(root.glob("*val*.bin"))
    if not train_files or not val_files:
        raise ValueError(
            f"data_dir={str(root)!r} must hold *train*.bin and *val*.bin uint16 shards"
        )
    vocab = preset.model_overrides.get("vocab_size", 50304)
    train = TokenShardBatches(
        train_files,
        context=preset.context,
        batch_size=preset.batch_size,
        vocab_size=vocab,
        seed=seed,
    )
    val = TokenShardBatches(
        val_files, context=preset.context, batch_size=preset.batch_size, vocab_size=vocab, seed=seed
    ).validation(max_windows=preset.val_windows)
    manifest = {
        "corpus": "shards",
        "train": [str(p) for p in train_files],
        "val": [str(p) for p in val_files],
        "train_tokens": train.num_tokens,
        "token": "uint16",
    }
    return StudyData(train.batch, val, manifest, vocab)


# ---------------------------------------------------------------------- one run
@torch.no_grad()
def validation_loss(
    model: torch.nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], device: str
) -> float:
    """Mean cross-entropy (nats per token) over fixed batches, eval mode (biases at their means)."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    for x, y in batches:
        _, loss = model(x.to(device), y.to(device))
        total += float(loss) * y.numel()
        count += y.numel()
    model.train(was)
    return total / count


def execute_run(
    cfg: RunConfig,
    preset: SymbreakPreset,
    *,
    data_dir: str | Path | None = None,
    steps: int | None = None,
) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """Train one run; return ``(rows, manifest)``. A diverged or failed run is recorded."""
    from ..data.stream import derive_seed
    from ..diagnostics.noether import NoetherMonitor
    from ..energy import EnergyTracker
    from ..errors import NonFiniteError
    from ..models.gpt import build_gpt

    steps = preset.steps if steps is None else steps
    device = preset.device
    rows: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    status, error, diverged_at = "completed", None, None
    started = time.time()
    t0 = time.perf_counter()
    data_manifest: dict[str, Any] = {}
    n_params = None
    source = None
    try:
        data = load_study_data(preset, cfg.seed, data_dir)
        data_manifest = data.manifest
        overrides = dict(preset.model_overrides, attention=cfg.variant, vocab_size=data.vocab_size)
        model = build_gpt(preset.model, seed=cfg.seed, **overrides).to(device)
        n_params = model.num_parameters()
        opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.hyper, cfg.seed)
        tracker = EnergyTracker(opt)
        monitor = NoetherMonitor(model, opt)
        source = monitor.source
        for t in range(steps + 1):
            if t % preset.eval_every == 0 or t == steps:
                val = validation_loss(model, data.validation, device)
                if t == steps:
                    break
            else:
                val = None
            x, y = (z.to(device) for z in data.batch(t))
            biases = model.draw_biases(
                torch.Generator().manual_seed(derive_seed(cfg.seed, BIAS_STREAM, t))
            )

            def batch_loss(x=x, y=y, biases=biases) -> torch.Tensor:
                return model(x, y, biases=biases)[1]

            record, charges = monitor.step(tracker, batch_loss)
            s = charges.summary()
            row = dict(
                step=t,
                loss=record.loss,
                loss_after=record.loss_after,
                kinetic=record.kinetic,
                hamiltonian=record.hamiltonian,
                delta_h_int=record.delta_h_int,
                grad_norm=record.grad_norm,
                cap_engaged=bool(record.cap_engaged),
                val_loss=val,
                j_qk_norm=s["j_qk_norm"],
                j_vo_norm=s["j_vo_norm"],
                j_qk_rel=s["j_qk_rel"],
                j_vo_rel=s["j_vo_rel"],
                rescale_norm=s["rescale_norm"],
                wall_s=time.perf_counter() - t0,
            )
            for k, v in row.items():
                rows[k].append(v)
        final_val = val
    except NonFiniteError as exc:
        status, error, diverged_at, final_val = "diverged", str(exc), len(rows["step"]), None
    except Exception as exc:
        status, final_val = "failed", None
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
    manifest = {
        "run_id": cfg.run_id,
        "preset": cfg.preset,
        "config": asdict(cfg),
        "optimizer": cfg.optimizer,
        "variant": cfg.variant,
        "seed": cfg.seed,
        "hyper": cfg.hyper,
        "steps_requested": steps,
        "steps_done": len(rows["step"]),
        "batch_size": preset.batch_size,
        "context": preset.context,
        "eval_every": preset.eval_every,
        "val_windows": preset.val_windows,
        "model": preset.model,
        "model_overrides": preset.model_overrides,
        "parameters": n_params,
        "data": data_manifest,
        "device": device,
        "threads": torch.get_num_threads(),
        "dtype": "float32",
        "final_val_loss": final_val,
        "status": status,
        "error": error,
        "diverged_at_step": diverged_at,
        "wall_time_s": time.perf_counter() - t0,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "versions": _versions(),
        "loss_unit": "nats per token",
        "noether_source": source,
    }
    return rows, manifest


def _commit(root: Path, run_id: str, rows: dict[str, list[Any]], manifest: dict[str, Any]) -> None:
    """Steps first, manifest last (the commit mark), both written atomically."""
    import pyarrow as pa

    from .store import atomic_write_text, write_table_atomic

    d = root / "runs" / run_id
    d.mkdir(parents=True, exist_ok=True)
    f64 = pa.float64()
    schema = pa.schema(
        [("step", pa.int64())]
        + [(c, f64) for c in COLUMNS[1:7]]
        + [("cap_engaged", pa.bool_())]
        + [(c, f64) for c in COLUMNS[8:]]
    )
    write_table_atomic(
        d / "steps.parquet", pa.Table.from_pydict({c: rows[c] for c in COLUMNS}, schema=schema)
    )
    atomic_write_text(
        d / "manifest.json",
        json.dumps(dict(manifest, rows=len(rows["step"])), indent=2, sort_keys=True, default=str),
    )


@dataclass(frozen=True)
class SymbreakSummary:
    out: Path
    runs: int
    ran: int
    skipped: int
    failed: int
    wall_time_s: float
    table: list[dict[str, Any]]


def run_preset(
    name: str | SymbreakPreset,
    out: str | Path,
    *,
    data_dir: str | Path | None = None,
    steps: int | None = None,
    seeds: Sequence[int] | None = None,
    optimizers: Sequence[str] | None = None,
    device: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> SymbreakSummary:
    """Run (or resume) preset ``name`` (a name of :data:`PRESETS` or a :class:`SymbreakPreset`)
    into ``out``; then analyse and write the report. Returns the summary with the table rows."""
    if isinstance(name, SymbreakPreset):
        preset = name
    elif name in PRESETS:
        preset = PRESETS[name]
    else:
        raise ValueError(f"preset must be one of {', '.join(map(repr, PRESETS))}; got {name!r}")
    name = preset.name
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
        preset = replace(preset, steps=steps)
    if seeds is not None:
        preset = replace(preset, seeds=tuple(int(s) for s in seeds))
    if optimizers is not None:
        preset = replace(preset, optimizers=tuple(optimizers))
    if device is not None:
        preset = replace(preset, device=device)
    if preset.device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"preset {name} runs on {preset.device!r}, but CUDA is not available here; "
            "pass device='cpu' (--device cpu) to force the CPU"
        )
    root = Path(out)
    (root / "runs").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    plan = plan_runs(preset)
    ran = skipped = failed = 0
    for i, cfg in enumerate(plan, 1):
        if (root / "runs" / cfg.run_id / "manifest.json").exists():
            skipped += 1
            continue
        if preset.threads is not None:
            torch.set_num_threads(preset.threads)
        rows, manifest = execute_run(cfg, preset, data_dir=data_dir)
        _commit(root, cfg.run_id, rows, manifest)
        ran += 1
        failed += manifest["status"] == "failed"
        if progress is not None:
            progress(
                f"[{i}/{len(plan)}] {cfg.run_id}: {manifest['status']}, final val loss "
                f"{_fmt(manifest['final_val_loss'])}, {manifest['wall_time_s']:.1f} s"
            )
    table = analyse(root, preset_name=name)
    return SymbreakSummary(root, len(plan), ran, skipped, failed, time.perf_counter() - t0, table)


# ---------------------------------------------------------------------- analysis
def _fmt(v: Any, spec: str = ".4f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return format(v, spec)


def _load(root: Path) -> list[tuple[dict[str, Any], dict[str, list[Any]]]]:
    import pyarrow.parquet as pq

    out = []
    for d in sorted((root / "runs").iterdir()):
        man_path = d / "manifest.json"
        if not man_path.exists():
            continue
        manifest = json.loads(man_path.read_text(encoding="utf-8"))
        cols = pq.read_table(d / "steps.parquet").to_pydict()
        out.append((manifest, cols))
    return out


def _tail_median(values: Sequence[Any], fraction: float = 0.2) -> float | None:
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return None
    return statistics.median(xs[int(len(xs) * (1 - fraction)) :] or xs[-1:])


TABLE_COLUMNS = [
    "optimizer",
    "variant",
    "n",
    "noether_source",
    "val_loss",
    "val_loss_ci_low",
    "val_loss_ci_high",
    "j_qk_norm",
    "j_qk_norm_ci_low",
    "j_qk_norm_ci_high",
    "j_vo_norm",
    "j_vo_norm_ci_low",
    "j_vo_norm_ci_high",
    "j_qk_rel",
    "j_vo_rel",
    "ms_per_step",
]


def analyse(out: str | Path, *, preset_name: str | None = None) -> list[dict[str, Any]]:
    """Aggregate the runs of ``out`` into ``table.csv``, the PNG figures and ``report.html``.

    Per (optimiser, variant): the final validation loss and the tail medians (last 20 % of the
    steps) of ``‖J_QK‖``, ``‖J_VO‖`` and their fractions, each as the mean over seeds with a 95 %
    t-interval (n − 1 degrees of freedom).
    """
    from ..diagnostics.cap import mean_ci
    from .store import write_csv

    root = Path(out)
    runs = _load(root)
    groups: dict[tuple[str, str], list[tuple[dict[str, Any], dict[str, list[Any]]]]] = defaultdict(
        list
    )
    for man, cols in runs:
        groups[(man["optimizer"], man["variant"])].append((man, cols))
    table = []
    order = {o: i for i, o in enumerate(OPTIMIZERS)}
    for (opt, variant), members in sorted(
        groups.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1])
    ):
        done = [(m, c) for m, c in members if m["status"] == "completed"]
        row: dict[str, Any] = {
            "optimizer": opt,
            "variant": variant,
            "n": len(done),
            "noether_source": members[0][0].get("noether_source"),
        }
        stats = {
            "val_loss": [m["final_val_loss"] for m, _ in done],
            "j_qk_norm": [_tail_median(c["j_qk_norm"]) for _, c in done],
            "j_vo_norm": [_tail_median(c["j_vo_norm"]) for _, c in done],
        }
        for key, values in stats.items():
            ci = mean_ci([v for v in values if v is not None])
            row[key], row[f"{key}_ci_low"], row[f"{key}_ci_high"] = ci.mean, ci.ci_low, ci.ci_high
        for key in ("j_qk_rel", "j_vo_rel"):
            vals = [_tail_median(c[key]) for _, c in done]
            vals = [v for v in vals if v is not None]
            row[key] = statistics.fmean(vals) if vals else None
        walls = [m["wall_time_s"] / max(1, m["steps_done"]) for m, _ in done]
        row["ms_per_step"] = 1000 * statistics.fmean(walls) if walls else None
        table.append(row)
    write_csv(root / "table.csv", table, TABLE_COLUMNS)
    figures = _figures(root, runs)
    _report(root, table, runs, figures, preset_name)
    return table


def _figures(root: Path, runs: list[tuple[dict[str, Any], dict[str, list[Any]]]]) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is in the lab extra
        return []
    colours = {"adamw": "C0", "sgd-momentum": "C1", "ecdq1": "C2", "leapfrog": "C3"}
    styles = {"symmetric": "-", "bq+bv": "--", "bq": ":"}
    names = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    seen = set()
    for man, cols in runs:
        pts = [(s, v) for s, v in zip(cols["step"], cols["val_loss"], strict=True) if v is not None]
        if man.get("final_val_loss") is not None:
            pts.append((man["steps_done"], man["final_val_loss"]))
        if not pts:
            continue
        key = (man["optimizer"], man["variant"])
        ax.plot(
            *zip(*pts, strict=True),
            styles.get(man["variant"], "-"),
            color=colours.get(man["optimizer"], "k"),
            alpha=0.8,
            lw=1.2,
            label=None if key in seen else f"{key[0]} / {key[1]}",
        )
        seen.add(key)
    starts = [v for _, cols in runs for v in cols["val_loss"][:1] if v is not None]
    if starts:  # a diverging run would squash the others: clip at 1.25 × the initial loss
        ax.set_ylim(top=1.25 * max(starts))
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss (nats per token; clipped at 1.25 × initial)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(root / "curves.png", dpi=110)
    plt.close(fig)
    names.append("curves.png")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
    seen = set()
    for man, cols in runs:
        key = (man["optimizer"], man["variant"])
        for ax, col in zip(axes, ("j_qk_norm", "j_vo_norm"), strict=True):
            pts = [
                (s, max(v, 1e-18))
                for s, v in zip(cols["step"], cols[col], strict=True)
                if v is not None
            ]
            if pts:
                ax.plot(
                    *zip(*pts, strict=True),
                    styles.get(man["variant"], "-"),
                    color=colours.get(man["optimizer"], "k"),
                    alpha=0.7,
                    lw=1,
                    label=None if key in seen or col != "j_qk_norm" else f"{key[0]} / {key[1]}",
                )
        seen.add(key)
    for ax, title in zip(axes, ("‖J_QK‖ (all heads)", "‖J_VO‖ (all heads)"), strict=True):
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(root / "charges.png", dpi=110)
    plt.close(fig)
    names.append("charges.png")
    return names


def _report(
    root: Path,
    table: list[dict[str, Any]],
    runs: list[tuple[dict[str, Any], dict[str, list[Any]]]],
    figures: list[str],
    preset_name: str | None,
) -> None:
    from .store import atomic_write_text

    esc = html.escape
    n_runs = len(runs)
    statuses = defaultdict(int)
    for man, _ in runs:
        statuses[man["status"]] += 1
    wall = sum(man["wall_time_s"] for man, _ in runs)
    data = runs[0][0].get("data", {}) if runs else {}
    head = "".join(
        f"<th>{esc(h)}</th>"
        for h in (
            "optimiser",
            "variant",
            "n",
            "P from",
            "final val loss (95% CI)",
            "tail ‖J_QK‖ (95% CI)",
            "tail ‖J_VO‖ (95% CI)",
            "J_QK fraction",
            "J_VO fraction",
            "ms/step",
        )
    )
    head = f"<tr>{head}</tr>"
    body = []
    for r in table:

        def ci(key: str, spec: str, r: dict[str, Any] = r) -> str:
            low, high = _fmt(r[key + "_ci_low"], spec), _fmt(r[key + "_ci_high"], spec)
            return f"{_fmt(r[key], spec)} [{low}, {high}]"

        body.append(
            f"<tr><td>{esc(r['optimizer'])}</td><td>{esc(r['variant'])}</td><td>{r['n']}</td>"
            f"<td>{esc(str(r['noether_source']))}</td><td>{ci('val_loss', '.4f')}</td>"
            f"<td>{ci('j_qk_norm', '.3e')}</td><td>{ci('j_vo_norm', '.3e')}</td>"
            f"<td>{_fmt(r['j_qk_rel'], '.3e')}</td><td>{_fmt(r['j_vo_rel'], '.3e')}</td>"
            f"<td>{_fmt(r['ms_per_step'], '.0f')}</td></tr>"
        )
    imgs = "".join(
        f'<p><img src="{esc(f)}" alt="{esc(f)}" style="max-width:100%"></p>' for f in figures
    )
    status_line = ", ".join(f"{v} {k}" for k, v in sorted(statuses.items()))
    corpus = esc(f"{data.get('corpus', '')} sha256 {str(data.get('sha256', ''))[:16]}")
    source = esc(str(data.get("source", "")))
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>hamopt symbreak report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}
</style></head><body>
<h1>Symmetry-broken attention: {esc(preset_name or "")}</h1>
<p>{n_runs} runs ({esc(status_line)}), total wall time {wall:.0f} s.
Data: {corpus} ({source}). Loss in nats per token; validation
in eval mode (attention biases at their means).</p>
<p>Charges: ‖J‖ = sqrt(Σ over layers and heads of ‖J_h‖_F²), median over the last 20 % of the
steps, mean over seeds with a 95 % t-interval; the fraction is ‖J‖ / (2‖X‖‖P‖) ∈ [0, 1].
P is the optimiser's momentum (Leapfrog: p; SGD-momentum: −√lr·b) or the step's displacement
over h (AdamW, ECDq1).
For the symmetric model with momentum dynamics the charges start at zero and stay there up to
rounding; symmetry-breaking biases create and move them.</p>
<table>{head}{"".join(body)}</table>
{imgs}
<p>Files: table.csv, runs/&lt;run_id&gt;/manifest.json, runs/&lt;run_id&gt;/steps.parquet.</p>
</body></html>
"""
    atomic_write_text(root / "report.html", doc)


def format_table(table: list[dict[str, Any]]) -> str:
    """The table as aligned text for the terminal."""
    head = (
        f"{'optimizer':<13}{'variant':<10}{'n':>2} {'val loss [95% CI]':<26}"
        f"{'tail |J_QK|':>12}{'tail |J_VO|':>12}{'QK frac':>10}{'VO frac':>10}{'ms/step':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in table:
        ci = f"{_fmt(r['val_loss'])} [{_fmt(r['val_loss_ci_low'])}, {_fmt(r['val_loss_ci_high'])}]"
        lines.append(
            f"{r['optimizer']:<13}{r['variant']:<10}{r['n']:>2} {ci:<26}"
            f"{_fmt(r['j_qk_norm'], '.3e'):>12}{_fmt(r['j_vo_norm'], '.3e'):>12}"
            f"{_fmt(r['j_qk_rel'], '.2e'):>10}{_fmt(r['j_vo_rel'], '.2e'):>10}"
            f"{_fmt(r['ms_per_step'], '.0f'):>9}"
        )
    return "\n".join(lines)
