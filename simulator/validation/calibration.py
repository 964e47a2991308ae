"""Fit the compute efficiency parameters on published measurements, and measure how well
the fit generalises.

What is fitted (few, physical), per GPU generation the cases cover (the catalog's
``architecture``: ampere, hopper, ...): the fraction of peak that large GEMMs reach
(``gemm_<generation>``) and the size at which a linear layer's GEMM reaches half of it
(``gemm_half_dim_<generation>``, :mod:`simulator.hardware.compute`); shared by all
(``SHARED``): ``attention_scale``, the share of its published benchmark rate a fused attention
kernel keeps inside a training step (the benchmarks, ``attention_by_kernel`` in
``efficiency.yaml``, keep the ratios between kernel families and generations). Priors and bounds
come from the kernel benchmarks (``../shared/reference/kernels.csv``, see each constant below).

Not fitted, priors from the benchmarks: the compute slowdown beside NCCL kernels
(``overlap_slowdown``: the local surrogate keeps communication fixed, so it cannot see it) and
the host dispatch of a blocking pipeline engine (``pipeline_dispatch_s``: one source of the
calibration files, GLM-130B, runs such an engine, so leave-one-source-out could not test a
fitted value). The HBM fraction of streaming kernels and the launch cost per kernel stay at their priors:
fitting them as well (tried in November 2026, before unfused attention was modelled) left
the in-sample error where it was (15.0-15.2 %) and raised the leave-one-source-out error
from 20.3 % to 22.1-24.7 %: they fitted noise. Network and
power parameters are stated priors (``efficiency.yaml``'s ``source``), not fitted;
``benchmarks/nccl_compare.py`` measures the network model against nccl-tests.

Derived, not fitted: for GPUs of architectures the cases do not cover, the GEMM fraction is
carried over through their measured maximum achievable matmul rate (catalog
``mamf_fraction``): ``gemm_of_mamf`` is the mean, over the fitted architectures whose GPUs
in the cases have such a measurement, of the fitted fraction over that measurement.

Several files fit together (``trainsim calibrate a.csv b.csv``): their rows are one table;
errors are reported per source and leave-one-source-out holds out one source at a time.

One run, one vote: a run published as several metrics (a step time and its TFLOP/s)
enters the fit once, with its first metric; errors are still reported for every row.

How: the error of a row is ``log(predicted / published)``; the fit minimises a robust
(soft-L1) sum of squared errors, so that a few rows the simulator cannot explain (for
example framework overheads it does not model) do not drag the others. Simulating every
case for every trial parameter vector would take hours, so the fit alternates:

1. simulate every case at the current parameters (the real model, events and all);
2. fit the parameters on a *local surrogate* of each case: its compute-bound time (forward,
   backward, recompute, bubble, stall) scales with the case's total GEMM/attention/element-
   wise time, recomputed exactly from its operations for the trial parameters, the optimizer
   time with the HBM fraction and launch cost, while its communication time stays as
   simulated;
3. repeat from 1 until the parameters move less than 0.5 % (at most ``max_rounds``).

The reported errors always come from step 1, the full simulation, never from the
surrogate. Leave-one-source-out cross-validation refits without each source in turn and
predicts that source's rows with the full simulation: the honest out-of-sample error.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from simulator.core.errors import InputError
from simulator.core.provenance import input_files
from simulator.hardware.catalog import Catalog, GPUSpec, load_catalog
from simulator.hardware.compute import ops_time_s
from simulator.inputs.efficiency_file import default_efficiency
from simulator.system.efficiency import Efficiency
from simulator.system.workplan import attention_kernel, kernel_work
from simulator.validation.cases import case_setup, read_cases
from simulator.validation.published import config_key, summary, validate
from simulator.workload.layer import layer_work
from simulator.workload.ops import embedding_work, head_work

COMPUTE_SCALED = ("forward_s", "backward_s", "recompute_s", "bubble_s", "stall_s")
FIXED = ("tp_comm_s", "cp_comm_s", "pp_comm_s", "dp_comm_s")
RATE_METRICS = ("tflops_per_gpu", "mfu", "hfu", "tokens_per_s_per_gpu")

PRIOR_GEMM = 0.75
"""Where every per-generation GEMM fraction starts (the prior in efficiency.yaml's ``source``),
so a rerun does not depend on the parameters it replaces."""

GEMM_BOUNDS = (0.3, 0.85)
"""Large-GEMM fraction of dense peak. The maximum achievable matmul rate measured on H100
is 80 % of dense peak (kernels.csv mamf-h100-sxm-bf16: 0.803; A100 SXM 0.869,
mamf-a100-sxm-bf16); a training GEMM does not beat the best shape of a brute-force search, so
0.85 bounds it. A fit at the bound signals work the model lacks, not an achieved rate."""

PRIOR_HALF_DIM = 0.0
HALF_DIM_BOUNDS = (0.0, 2048.0)
"""Linear-GEMM size at half efficiency. Prior 0: the memory-bound end of small GEMMs is the
roofline's bytes term already (kernels.csv deepgemm-h800-fp8-m64-*: M = 64 GEMMs run at 2.1-2.7
TB/s, at the HBM roof). Upper bound: 2048 would make a d = 2048 GEMM reach half of a large one,
while the square-matmul sweeps reach 0.60-0.76 of peak over 256-6888 (chsasank-*-square, a lower
bound that includes launch and sync) and the MAMF search finds the best rate at shapes with
min(M, N, K) of 1024-2048 (mamf-*-bf16)."""

ATTENTION_SCALE_BOUNDS = (0.5, 1.1)
"""Share of its benchmark rate a fused attention kernel keeps in a training step. Transformer
Engine's own fwd+bwd causal hd128 runs (te-h100-fb-test_1/3-cudnn: 0.33, 0.52) reach 0.7-1.1 of
the cuDNN prior (0.471); FlashAttention-3 inside a training step (fa3 on h200, 0.45) 0.91 of its
prior; 0.5 allows for the short sequences and GQA shapes of the calibration runs."""


@dataclass(frozen=True)
class SharedParameter:
    """A parameter fitted once for all GPUs: its :class:`ComputeEfficiency` field, the unit
    of the fitted number (``scale`` converts it to the field's SI value), prior and bounds."""

    name: str
    field: str
    scale: float
    prior: float
    bounds: tuple[float, float]


SHARED = (
    SharedParameter("attention_scale", "attention_scale", 1.0, 1.0, ATTENTION_SCALE_BOUNDS),
)
"""The shared parameters fitted (priors as in efficiency.yaml's ``source``). A field in
seconds would be fitted in microseconds (``scale`` 1e-6) so that the optimiser's steps
are of a like size."""

PER_GENERATION = (("gemm", PRIOR_GEMM, GEMM_BOUNDS), ("gemm_half_dim", PRIOR_HALF_DIM, HALF_DIM_BOUNDS))
"""The parameters fitted per GPU generation: name prefix, prior, bounds."""


@dataclass(frozen=True)
class _CaseWork:
    """One case's per-rank work of a step: groups of operations with how many times each group
    runs in a step on one rank (for the surrogate), and the device, precision and fused attention
    kernel family they run at."""

    groups: tuple[tuple[tuple[Any, ...], float], ...]
    device: GPUSpec
    precision: str
    kernel: str | None = None


def _case_work(setup) -> _CaseWork:
    """The operations of a case as its framework runs them (:func:`simulator.system.workplan.kernel_work`)."""
    model, plan = setup.model, setup.plan
    kw = plan.split
    per_stage = model.n_layers / plan.pp
    parts = [(layer_work(model, recompute=plan.recompute, attention=plan.attention,
                              checkpoint_every=plan.checkpoint_every, **kw), per_stage),
             (embedding_work(model, **kw), 1 / plan.pp), (head_work(model, **kw), 1 / plan.pp)]
    parts = [(kernel_work(work, model, plan), n) for work, n in parts]
    groups = tuple(((*work.forward, *work.backward, *work.recompute), n * plan.n_microbatches) for work, n in parts)
    return _CaseWork(groups, setup.device, plan.precision, attention_kernel(plan, setup.device.generation))


def _compute_time(work: _CaseWork, eff: Efficiency) -> float:
    """Seconds of all of a case's operations under ``eff`` (the roofline of :mod:`simulator.hardware.compute`)."""
    return sum(count * ops_time_s(ops, work.device, work.precision, eff.compute, work.kernel)
               for ops, count in work.groups)


class Calibration:
    """Fits :class:`Efficiency` parameters on a validation table (see module docstring)."""

    def __init__(self, cases: pd.DataFrame, *, catalog: Catalog | None = None, base: Efficiency | None = None,
                 log: Callable[[str], None] | None = None):
        self.cases = cases.reset_index(drop=True)
        self.catalog = catalog or load_catalog()
        self.base = base or default_efficiency()
        self.log = log or (lambda msg: None)
        gpus = [self.catalog.get(name) for name in sorted({str(g) for g in cases.gpu.dropna()}) if name in self.catalog]
        gens = sorted({gpu.generation for gpu in gpus})
        self.generations = gens
        measured = {gen: [gpu.mamf_fraction for gpu in gpus if gpu.generation == gen and gpu.mamf_fraction]
                    for gen in gens}
        self.mamf = {gen: float(np.mean(m)) for gen, m in measured.items() if m}  # architecture -> measured MAMF
        self.names = [f"{prefix}_{g}" for prefix, _, _ in PER_GENERATION for g in gens] + [p.name for p in SHARED]

    # -- parameter vector <-> Efficiency ------------------------------------------------
    def _split(self, x: np.ndarray) -> tuple[list[dict[str, float]], np.ndarray]:
        """Per-generation values of each :data:`PER_GENERATION` parameter, and the shared ones."""
        n = len(self.generations)
        per = [dict(zip(self.generations, (float(v) for v in x[k * n:(k + 1) * n]))) for k in range(len(PER_GENERATION))]
        return per, x[len(PER_GENERATION) * n:]

    def efficiency(self, x: np.ndarray, generations: list[str] | None = None) -> Efficiency:
        """Parameters ``x``; only ``generations`` (default all) get their own GEMM fraction and size
        effect; other GPUs get the fraction through their measured matmul rate (``gemm_of_mamf``,
        module docstring), or else the mean, and the mean size effect."""
        fitted = self.generations if generations is None else generations
        (gemm, half), rest = self._split(x)
        gens = {g: v for g, v in gemm.items() if g in fitted}
        halves = {g: v for g, v in half.items() if g in fitted}
        shared = {p.field: float(v) * p.scale for p, v in zip(SHARED, rest)}
        ratios = [v / self.mamf[g] for g, v in gens.items() if g in self.mamf]
        base = self.base.compute
        compute = base.model_copy(update={
            "gemm": float(np.mean(list(gens.values()))) if gens else base.gemm,
            "gemm_by_generation": gens, "gemm_half_dim_by_generation": halves,
            "gemm_half_dim": float(np.mean(list(halves.values()))) if halves else base.gemm_half_dim, **shared,
            "gemm_of_mamf": min(1.0, float(np.mean(ratios))) if ratios else base.gemm_of_mamf,
        })
        return dataclasses.replace(self.base, compute=compute)

    def vector(self, eff: Efficiency) -> np.ndarray:
        c = eff.compute
        return np.array([c.gemm_by_generation.get(g, c.gemm) for g in self.generations]
                        + [c.half_dim(g) for g in self.generations]
                        + [getattr(c, p.field) / p.scale for p in SHARED], dtype=float)

    def prior(self) -> np.ndarray:
        n = len(self.generations)
        return np.array([prior for _, prior, _ in PER_GENERATION for _ in range(n)] + [p.prior for p in SHARED])

    def n_runs(self) -> int:
        """Distinct runs among the cases (see :func:`simulator.validation.config_key`)."""
        return len({config_key(row) for _, row in self.cases.iterrows()})

    def typical(self) -> np.ndarray:
        """The size of a meaningful change of each parameter (a tenth of its bounds' span), for the
        optimiser's scaling and the convergence test."""
        lo, hi = self.bounds()
        return np.maximum(0.1 * (np.array(hi) - np.array(lo)), 1e-6)

    def bounds(self) -> tuple[list[float], list[float]]:
        """Each parameter's bounds; a generation's large-GEMM fraction also stays below the maximum
        achievable matmul rate measured on its GPUs (catalog ``mamf_fraction``), if any."""
        n = len(self.generations)
        lo = [b[0] for _, _, b in PER_GENERATION for _ in range(n)] + [p.bounds[0] for p in SHARED]
        hi = [min(b[1], self.mamf.get(g, 1.0)) if prefix == "gemm" else b[1]
              for prefix, _, b in PER_GENERATION for g in self.generations] + [p.bounds[1] for p in SHARED]
        return lo, hi

    # -- fitting -------------------------------------------------------------------------
    def fit(self, rows: np.ndarray | None = None, *, x0: np.ndarray | None = None, max_rounds: int = 8
            ) -> tuple[Efficiency, pd.DataFrame]:
        """Fit on the cases ``rows`` (all by default); returns the parameters and the full
        simulation's table of the training rows at them."""
        train = self.cases if rows is None else self.cases.iloc[rows]
        present = sorted({self.catalog.get(str(g)).generation for g in train.gpu.dropna() if str(g) in self.catalog})
        x = self.prior() if x0 is None else x0
        lo, hi = self.bounds()
        x = np.clip(x, lo, hi)
        for round_ in range(1, max_rounds + 1):
            eff = self.efficiency(x, present)
            table = validate(train, catalog=self.catalog, efficiency=eff)
            if round_ == 1 and not (table.status == "ok").any():
                reason = table.status.value_counts().index[0] if len(table) else "the table has no rows"
                raise InputError(f"none of the {len(table)} rows could be simulated, so nothing can be fitted; "
                                 f"the most common reason: {reason}")
            surrogate = self._surrogate(train, table, eff)
            self.log(f"round {round_}: MAPE {_mape(table):.2f} % at {self._describe(x)}")
            if not surrogate:
                break
            typical = self.typical()
            solution = least_squares(lambda v: self._residuals(surrogate, v, present), x, bounds=(lo, hi),
                                     loss="soft_l1", f_scale=0.1, x_scale=np.maximum(np.abs(x), typical))
            step = np.abs(solution.x - x) / np.maximum(np.abs(x), typical)
            x = solution.x
            if step.max() < 0.005:
                break
        eff = self.efficiency(x, present)
        table = validate(train, catalog=self.catalog, efficiency=eff)
        self.log(f"final: MAPE {_mape(table):.2f} % at {self._describe(x)}")
        return eff, table

    def _describe(self, x: np.ndarray) -> str:
        return ", ".join(f"{n}={v:.3g}" for n, v in zip(self.names, x))

    def _surrogate(self, train: pd.DataFrame, table: pd.DataFrame, eff: Efficiency) -> list[tuple]:
        """Per simulated row: (ops, compute-scaled seconds, fixed seconds, W at eff, metric, value
        at eff, published)."""
        out = []
        runs: set[tuple] = set()
        for (_, row), (_, res) in zip(train.iterrows(), table.iterrows()):
            key = config_key(row)
            if res.status != "ok" or key in runs:
                continue
            runs.add(key)
            setup, _ = case_setup(row, self.catalog, eff)
            ops = _case_work(setup)
            scaled = float(sum(res[c] for c in COMPUTE_SCALED))
            fixed = float(sum(res[c] for c in FIXED))
            out.append((ops, scaled, fixed, float(res.optimizer_s), _compute_time(ops, eff), eff.compute,
                        str(row.metric), float(res.predicted), float(row.value)))
        return out

    def _residuals(self, surrogate: list[tuple], x: np.ndarray, generations: list[str]) -> np.ndarray:
        eff = self.efficiency(x, generations)
        res = np.empty(len(surrogate))
        c = eff.compute
        for i, (ops, scaled, fixed, opt, w0, c0, metric, value0, published) in enumerate(surrogate):
            # the optimizer streams its state from HBM: one launch plus bytes at the memory fraction
            opt_new = (opt - c0.kernel_overhead_s) * c0.memory / c.memory + c.kernel_overhead_s
            ratio = (scaled * _compute_time(ops, eff) / w0 + fixed + opt_new) / (scaled + fixed + opt)
            predicted = value0 / ratio if metric in RATE_METRICS else value0 * ratio
            res[i] = np.log(predicted / published)
        return res

    # -- cross-validation ----------------------------------------------------------------
    def leave_one_source_out(self, x0: np.ndarray | None = None) -> pd.DataFrame:
        """For every source: fit without it, predict it with the full simulation."""
        tables = []
        for source in sorted(self.cases.source_id.dropna().unique()):
            held = (self.cases.source_id == source).to_numpy()
            self.log(f"leave out {source}")
            eff, _ = self.fit(np.flatnonzero(~held), x0=x0)
            tables.append(validate(self.cases[held], catalog=self.catalog, efficiency=eff))
        return pd.concat(tables, ignore_index=True)


def _mape(table: pd.DataFrame) -> float:
    ok = table[table.status == "ok"]
    return float(ok.error_pct.abs().mean()) if len(ok) else float("nan")


def read_calibration_files(paths: Sequence[str | Path]) -> pd.DataFrame:
    """The cases of several validation CSVs as one table (each row keeps its ``source_id``)."""
    return pd.concat([read_cases(p) for p in paths], ignore_index=True)


def provenance(cases_path: str | Path | Sequence[str | Path], cal: Calibration, eff: Efficiency,
               in_sample: pd.DataFrame, loso: pd.DataFrame | None, *, hardware: str | Path | None = None,
               efficiency: str | Path | None = None) -> dict[str, Any]:
    """The ``fit`` record stored with fitted parameters: data (every file with its SHA-256),
    method, errors (``hardware``, ``efficiency``: the user files the fit used, if any)."""
    paths = [cases_path] if isinstance(cases_path, (str, Path)) else list(cases_path)
    command = "trainsim calibrate " + " ".join(str(p) for p in paths) + (" --loso" if loso is not None else "")
    inputs = {"hardware": hardware, "efficiency": efficiency}
    for option, path in inputs.items():
        if path:
            command += f" --{option} {path}"

    def per_source(table: pd.DataFrame) -> dict[str, dict[str, float]]:
        s = summary(table)
        return {str(k): {"rows": int(r.rows), "failed": int(r.failed), "MAPE_pct": round(float(r.MAPE_pct), 2),
                         "median_abs_pct": round(float(r.median_abs_pct), 2),
                         "max_abs_pct": round(float(r.max_abs_pct), 2)} for k, r in s.iterrows()}

    record: dict[str, Any] = {
        "fitted_on": {"files": input_files(paths),
                      "rows": int(len(cal.cases)), "distinct_runs": cal.n_runs(),
                      **{f"{option}_sha256": input_files([path])[0]["sha256"]
                         for option, path in inputs.items() if path}},
        "date": _dt.date.today().isoformat(),
        "command": command,
        "parameters": {**dict(zip(cal.names, (round(float(v), 4) for v in cal.vector(eff)))),
                       "gemm (other generations)": round(eff.compute.gemm, 4),
                       "gemm_half_dim (other generations)": round(eff.compute.gemm_half_dim, 1),
                       "gemm_of_mamf (derived)": (None if eff.compute.gemm_of_mamf is None
                                                  else round(eff.compute.gemm_of_mamf, 4))},
        "not_fitted": {"overlap_slowdown": eff.compute.overlap_slowdown,
                       "pipeline_dispatch_us": round(eff.compute.pipeline_dispatch_s * 1e6, 3),
                       "attention_by_kernel": "benchmarks (source), scaled by attention_scale"},
        "method": "robust (soft-L1) least squares on log(predicted/published), alternating full "
                  "simulation and a local compute-scaling surrogate (simulator/validation/calibration.py)",
        "in_sample": per_source(in_sample),
    }
    if loso is not None:
        record["leave_one_source_out"] = per_source(loso)
    return record


def fitted_efficiency(eff: Efficiency, fit: dict[str, Any]) -> Efficiency:
    """``eff`` with its provenance set to a fit record (``source`` keeps describing the priors)."""
    return dataclasses.replace(eff, fit=fit)


# --------------------------------------------------------------------------- decision quality

CONTENDER_KEY = ("source_id", "n_layers", "d_model", "seq_len", "gpu", "n_gpus", "metric")
"""What the plans of one contender set share: the source, the model's shape, the fleet and the
metric published; they differ in their plan (micro-batch, schedule, recompute, TP x PP, ...)."""


def contender_sets(cases: pd.DataFrame) -> list[pd.DataFrame]:
    """The contender sets of a validation table: rows sharing :data:`CONTENDER_KEY` with at least
    two distinct runs (:func:`~simulator.validation.published.config_key`), one row per run."""
    sets = []
    for _, group in cases.groupby(list(CONTENDER_KEY), dropna=False, sort=True):
        runs = group.loc[~group.apply(config_key, axis=1).duplicated()]
        if len(runs) >= 2:
            sets.append(runs)
    return sets


def _throughput(metric: str, value: pd.Series, batch: pd.Series) -> pd.Series:
    """Higher is better: a rate as published, a step time as sequences per second."""
    return value if metric in RATE_METRICS else batch / value


def decision_quality(cases: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Per contender set (:func:`contender_sets`) of ``cases``, predicted (``table``, as
    :func:`~simulator.validation.published.validate` returns, same order) against measured ranks:
    ``spearman`` (rank correlation of throughput; NaN if fewer than two runs were simulated) and
    ``concordant`` (share of the pairs of runs ordered the same way)."""
    from scipy.stats import spearmanr

    predicted = table.set_index("case_id")
    rows = []
    for runs in contender_sets(cases):
        ok = runs[runs.case_id.map(predicted.status).eq("ok")]
        metric = str(runs.metric.iloc[0])
        label = f"{runs.source_id.iloc[0]}: {runs.case_id.iloc[0]} .. ({len(runs)} runs, {metric})"
        if len(ok) < 2:
            rows.append(dict(set=label, runs=len(runs), simulated=len(ok), spearman=np.nan, concordant=np.nan))
            continue
        measured = _throughput(metric, ok.value.astype(float), ok.global_batch_seqs.astype(float)).to_numpy()
        model = _throughput(metric, ok.case_id.map(predicted.predicted).astype(float),
                            ok.global_batch_seqs.astype(float)).to_numpy()
        pairs = [(i, j) for i in range(len(ok)) for j in range(i + 1, len(ok)) if measured[i] != measured[j]]
        same = [np.sign(measured[i] - measured[j]) == np.sign(model[i] - model[j]) for i, j in pairs]
        rho = float(spearmanr(measured, model).statistic) if len(ok) > 2 else (1.0 if all(same) else -1.0)
        rows.append(dict(set=label, runs=len(runs), simulated=len(ok), spearman=rho,
                         concordant=float(np.mean(same)) if same else np.nan))
    return pd.DataFrame(rows)
