"""Build the error band file (``trainsim bands``): P10 and P90 of the residuals per regime.

The residuals come from the calibration files re-simulated by :func:`~simulator.validation.
published.validate`, which gives every row its regime (:mod:`simulator.results.band`):

* ``leave-one-source-out`` (default, the honest out-of-sample error): for every source, the
  efficiency parameters are fitted without it (:meth:`~simulator.validation.calibration.
  Calibration.leave_one_source_out`) and its rows predicted with the full simulation. This
  refits once per source: minutes (measured by ``trainsim bands``, kept in the file).
* ``in-sample`` (``--in-sample``, seconds): the rows predicted at the efficiency parameters given
  (the packaged ones by default, fitted on these files): narrower than the truth, and labelled
  so in the file and in every band.

Peak-memory rows are predicted at the given parameters either way (no fitted parameter moves a
memory prediction); their residuals are labelled ``in-sample`` in the file.

A residual is ``log(published / predicted)`` of step time (rate metrics converted,
:func:`~simulator.results.band.metric_kind`) or of peak memory. One run, one vote, as in the
fit: a run published as several metrics (a step time and its MFU) counts once, with its first
row.

The band is for a run of a source the calibration has not seen. Residuals of one source share an
offset (its hardware, software version, how it measured), so the plain quantiles of all runs,
dominated by the few sources with many runs, are too narrow for a new source: built without a
source, they held only 35 % of its runs (leave-one-source-out residuals of calibration.csv and
calibration-2.csv, December 2026). The quantiles are therefore those of a predictive sample
(:func:`predictive_sample`): every source's offset from the mean of the sources (widened by
``sqrt(1 + 1/k)`` for the uncertainty of that mean over ``k`` sources) plus every within-source
deviation, a non-parametric random-effects model; quantiles are numpy's default (linear). A level
is used when it has ``min_rows`` runs from ``min_sources`` sources (a few sources say
nothing of the spread between sources); every level (:data:`~simulator.results.band.LEVELS`)
keeps every key with its run and source counts, and the reader picks the finest that qualifies.

Coverage, written into the file: the fraction of runs whose published value lies inside the
band the file gives them (close to 80 % by construction, since the band is made from those
residuals), and the *cross-validated* coverage, in which each source's runs are judged by a band
built without that source: how often a band holds for a source it has not seen.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from simulator.core.atomic import write_text_atomically
from simulator.core.provenance import input_files
from simulator.core.version import __version__
from simulator.hardware.catalog import Catalog, load_catalog
from simulator.inputs.efficiency_file import default_efficiency, efficiency_to_dict
from simulator.results.band import (
    KINDS,
    LEVELS,
    MIN_ROWS,
    MIN_SOURCES,
    QUANTILES,
    BandTable,
    Regime,
    metric_kind,
)
from simulator.system.efficiency import Efficiency
from simulator.validation.calibration import Calibration
from simulator.validation.published import config_key, validate

RESIDUAL_COLUMNS = ("case_id", "source_id", "kind", "residual", "framework", "generation", "family", "n_gpus")


def residuals(table: pd.DataFrame, cases: pd.DataFrame) -> pd.DataFrame:
    """One residual per run and kind (:data:`RESIDUAL_COLUMNS`) from ``validate``'s ``table`` of
    ``cases`` (rows matched by ``case_id``); rows not simulated or without a band are left out."""
    keys = {str(row["case_id"]): config_key(row) for _, row in cases.iterrows()}
    out, seen = [], set()
    for _, row in table.iterrows():
        kind, sign = metric_kind(str(row["metric"]))
        if kind is None or row["status"] != "ok" or pd.isna(row.get("regime_generation")):
            continue
        run = (keys.get(str(row["case_id"]), str(row["case_id"])), kind)
        if run in seen:
            continue
        seen.add(run)
        out.append((str(row["case_id"]), str(row["source_id"]), kind,
                    sign * float(np.log(row["published"] / row["predicted"])), str(row["regime_framework"]),
                    str(row["regime_generation"]), str(row["regime_parallelism"]), int(row["regime_gpus"])))
    return pd.DataFrame(out, columns=list(RESIDUAL_COLUMNS))


def _key(row: Any, level: str) -> str:
    return Regime(row.framework, row.generation, row.family, int(row.n_gpus)).key(level)


def predictive_sample(residual: pd.Series, source: pd.Series) -> np.ndarray:
    """Residuals a run of a new source could have: every source offset (its mean residual, spread
    about the mean of the ``k`` source means by ``sqrt(1 + 1/k)`` for the uncertainty of that mean)
    plus every within-source deviation (a run's residual minus its source's mean). With one source
    this is the residuals themselves."""
    means = residual.groupby(source).mean()
    within = (residual - source.map(means)).to_numpy()
    centre = float(means.mean())
    offsets = (means.to_numpy() - centre) * np.sqrt(1 + 1 / len(means)) + centre
    return (offsets[:, None] + within[None, :]).ravel()


def quantile_levels(res: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """Per level and key of ``res``: ``p10`` and ``p90`` of its :func:`predictive_sample` (log
    residuals), its ``rows`` (runs), ``sources`` and ``median`` residual."""
    levels: dict[str, dict[str, dict[str, float]]] = {}
    for level in LEVELS:
        keys = pd.Series([_key(r, level) for r in res.itertuples()], index=res.index, dtype=object)
        levels[level] = {}
        for key, g in res.groupby(keys, sort=True):
            p10, p90 = np.quantile(predictive_sample(g.residual, g.source_id), QUANTILES)
            levels[level][str(key)] = {"p10": round(float(p10), 5), "p90": round(float(p90), 5), "rows": len(g),
                                       "sources": int(g.source_id.nunique()),
                                       "median": round(float(g.residual.median()), 5)}
    return levels


def band_document(res: pd.DataFrame, *, label: str, min_rows: int = MIN_ROWS,
                  min_sources: int = MIN_SOURCES) -> dict[str, Any]:
    """The band file's content (without provenance) for residuals ``res`` of kind ``label``."""
    doc: dict[str, Any] = {"min_rows": min_rows, "min_sources": min_sources, "quantiles": list(QUANTILES)}
    step = res[res.kind == "step_time"]
    doc["covered"] = {"frameworks": sorted(set(step.framework)), "generations": sorted(set(step.generation)),
                      "families": sorted(set(step.family)),
                      "max_gpus": int(step.n_gpus.max()) if len(step) else 0}
    for kind in KINDS:
        part = res[res.kind == kind]
        doc[kind] = ({"residuals": label, "levels": quantile_levels(part)} if len(part) else
                     {"residuals": "prior", "levels": {}})
    return doc


def coverage(res: pd.DataFrame, table: BandTable) -> dict[str, dict[str, float]]:
    """Per kind: runs, how many have their published value inside ``table``'s band, the fraction."""
    out = {}
    for kind in KINDS:
        part = res[res.kind == kind]
        inside = sum(q.p10 <= r.residual <= q.p90 for r in part.itertuples()
                     for q in [table.quantiles(kind, Regime(r.framework, r.generation, r.family, int(r.n_gpus)))])
        out[kind] = {"runs": len(part), "inside": int(inside),
                     "fraction": round(inside / len(part), 4) if len(part) else None}
    return out


def cross_validated_coverage(res: pd.DataFrame, **levels: int) -> dict[str, dict[str, float]]:
    """:func:`coverage` of each source's runs by the band built from the other sources' runs
    (``levels``: ``min_rows``, ``min_sources`` of :func:`band_document`)."""
    parts = [coverage(res[res.source_id == s], BandTable(band_document(res[res.source_id != s], label="cv",
                                                                      **levels)))
             for s in sorted(set(res.source_id))]
    out = {}
    for kind in KINDS:
        runs = sum(p[kind]["runs"] for p in parts)
        inside = sum(p[kind]["inside"] for p in parts)
        out[kind] = {"runs": runs, "inside": inside, "fraction": round(inside / runs, 4) if runs else None}
    return out


def predictions(cases: pd.DataFrame, *, catalog: Catalog | None = None, efficiency: Efficiency | None = None,
                in_sample: bool = False, log: Callable[[str], None] | None = None) -> pd.DataFrame:
    """``validate``'s table of ``cases``: leave-one-source-out (refitted per source from the
    ``efficiency`` given), or at ``efficiency`` itself with ``in_sample``. Rows of other than
    step-time metrics (peak memory) are always predicted at ``efficiency``: no fitted parameter
    moves a memory prediction, so refitting without their source would not change them."""
    catalog = catalog or load_catalog()
    timed = cases.metric.map(lambda m: metric_kind(str(m))[0] == "step_time").to_numpy(dtype=bool)
    if in_sample or not timed.any():
        return validate(cases, catalog=catalog, efficiency=efficiency)
    loso = Calibration(cases[timed], catalog=catalog, base=efficiency, log=log).leave_one_source_out()
    rest = validate(cases[~timed], catalog=catalog, efficiency=efficiency) if (~timed).any() else None
    return pd.concat([loso, rest], ignore_index=True) if rest is not None else loso


def build_bands(tables: Sequence[pd.DataFrame], files: Sequence[str | Path], *, catalog: Catalog | None = None,
                efficiency: Efficiency | None = None, in_sample: bool = False, min_rows: int = MIN_ROWS,
                min_sources: int = MIN_SOURCES, command: str = "", log: Callable[[str], None] | None = None
                ) -> tuple[dict[str, Any], pd.DataFrame]:
    """(the band file's document, the residuals) from the case ``tables`` read from ``files``."""
    start = time.perf_counter()
    cases = pd.concat(list(tables), ignore_index=True)
    table = predictions(cases, catalog=catalog, efficiency=efficiency, in_sample=in_sample, log=log)
    res = residuals(table, cases)
    label = "in-sample" if in_sample else "leave-one-source-out"
    doc = band_document(res, label=label, min_rows=min_rows, min_sources=min_sources)
    if "levels" in doc["memory"] and doc["memory"]["levels"]:
        doc["memory"]["residuals"] = "in-sample"
    seconds = time.perf_counter() - start
    doc["coverage"] = {"of_these_runs": coverage(res, BandTable(doc)),
                       "cross_validated_by_source": cross_validated_coverage(res, min_rows=min_rows,
                                                                             min_sources=min_sources)}
    doc = {"provenance": _provenance(files, cases, command, label, seconds, efficiency), **doc}
    return doc, res


def _provenance(files: Sequence[str | Path], cases: pd.DataFrame, command: str, label: str, seconds: float,
                efficiency: Efficiency | None) -> dict[str, Any]:
    return {
        "command": command, "date": _dt.date.today().isoformat(), "trainsim_version": __version__,
        "residuals": label, "seconds": round(seconds, 1),
        "inputs": input_files(files),
        "rows": len(cases), "sources": sorted(str(s) for s in cases.source_id.dropna().unique()),
        "efficiency": _efficiency_record(efficiency or default_efficiency()),
        "residual": "log(published / predicted) of step time (rate metrics converted) or peak memory, "
                    "one per run; P10 and P90 (numpy.quantile, linear) of source offsets + within-source "
                    "deviations (bands.predictive_sample)",
    }


def _efficiency_record(eff: Efficiency) -> dict[str, Any]:
    """Which efficiency parameters the residuals were computed from (leave-one-source-out refits
    the compute ones from priors and keeps the others): their fit's command and date, and the
    sha256 of their YAML layout."""
    layout = yaml.safe_dump(efficiency_to_dict(eff), sort_keys=True)
    fit = eff.fit or {}
    return {"fit_command": fit.get("command"), "fit_date": fit.get("date"),
            "sha256": hashlib.sha256(layout.encode()).hexdigest()}


HEADER = ("# trainsim error bands, written by `trainsim bands` (simulator/validation/bands.py); see docs/bands.md.\n"
          "# p10/p90: of log(published / predicted) for a run of a new source; rows: runs. "
          "Do not edit: rerun the command.\n")


def write_bands(doc: dict[str, Any], path: str | Path) -> None:
    """Write a band document as YAML, atomically."""
    write_text_atomically(HEADER + yaml.safe_dump(doc, sort_keys=False, width=100), path)
