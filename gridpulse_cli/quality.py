"""Data quality screens: EIA's reported hourly values that are probably wrong, found, never changed.

Each screen is a pure function over ONE series' hourly values (a float Series on a complete hourly
UTC index, NaN where nothing is stored) that returns a boolean mask of the hours it flags and a
detail for each, vectorised over the whole series. `screen_series` runs the screens that make sense
for a series' dataset (and fuel) and returns the findings frame (FINDING_COLUMNS).

The method follows Ruggles et al. (2020), "Developing reliable hourly electricity demand data
through screening and imputation", Scientific Data 7:155, as PUDL implements it for demand
(`pudl.analysis.timeseries_cleaning`), and EIA's own rule for imputing EIA-930 demand. Where a
screen differs from the paper, its docstring says how and why; docs/quality.md has the rationale
and the share of hours each check flags on real EIA samples.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

FINDING_COLUMNS = ["period_end_utc", "check", "detail"]
# The per-series checks, the most specific first (the order `check --json` names an hour's checks).
SERIES_CHECKS = (
    "negative-or-zero",
    "negative",
    "identical-run",
    "spike",
    "eia-rule",
    "global-outlier",
    "local-outlier",
)

# The datasets whose values are load-like: positive, with a daily cycle (Ruggles' demand screens).
LOAD_LIKE = frozenset({"demand", "subregion-demand", "forecast", "generation"})
DEMAND = frozenset({"demand", "subregion-demand"})
# Fuels whose net generation cannot be negative beyond station service. Not SUN/WND (inverters
# and turbines draw power when idle: small negatives are real), not WAT (pumped storage is
# reported there by some BAs), not BAT/PS (storage charges), not OTH/UNK (mixed).
NON_NEGATIVE_FUELS = frozenset({"COL", "NG", "NUC", "OIL"})

# Thresholds (docs/quality.md, "Checks", explains each choice).
RUN_HOURS = 3  # identical values this many hours in a row (Ruggles: 3)
MIN_MWH = 10.0  # runs of smaller values, spikes and negatives smaller than this are noise
GLOBAL_MEDIANS = 9.0  # load-like: |x - median| > 9 x median (Ruggles/PUDL)
GLOBAL_IQRS = 10.0  # signed series: |x - median| > 10 x IQR (median ~ 0 there) ...
GLOBAL_HIGHS = 3.0  # ... and > 3 x the 99th percentile of |x|
SPIKE_IQRS = 4.0  # spike: deltas to both neighbours > 4 x rolling IQR of hourly deltas ...
SPIKE_SHARE = {"load": 0.25, "other": 1.0}  # ... and > this share of the local level
IQR_HOURS = 240  # rolling window of the IQRs (Ruggles: 240 h)
LOCAL_WINDOW, LOCAL_LONG = 48, 480  # rolling medians of the local prediction (Ruggles)
LOCAL_SHIFTS = range(-240, 241, 24)  # the same hour on the ten days either side (Ruggles)
LOCAL_IQRS = (3.5, 2.5)  # above / below the prediction, in rolling IQRs (Ruggles)
LOCAL_SHARE = 0.1  # and off the prediction by at least 10% of it (ours: quiet series)
EIA_PAST_FACTOR = 1.5  # EIA: >= 1.5 x the largest value seen before
EIA_MIN_HISTORY = 168  # hours of earlier values before the rule applies (ours)
NEGATIVE_SHARE = 0.02  # fuels: below -2% of the series' 95th percentile (station service)


@dataclass(frozen=True)
class Flags:
    """What one screen found: a mask over the series and a detail per flagged hour."""

    mask: np.ndarray
    details: list[str]


def mwh(value: float) -> str:
    """A value as details show it: `644,600`, `-3.5`."""
    if not np.isfinite(value):
        return "-"
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:,.3g}"


def _flags(mask: np.ndarray, describe: Callable[[int], str]) -> Flags:
    mask = np.asarray(mask, dtype=bool)
    return Flags(mask, [describe(int(i)) for i in np.flatnonzero(mask)])


def _rolling_iqr(values: np.ndarray, window: int) -> np.ndarray:
    rolling = pd.Series(values).rolling(window, min_periods=window // 4, center=True)
    return (rolling.quantile(0.75) - rolling.quantile(0.25)).to_numpy()


# ---- the screens ------------------------------------------------------------------------------


def negative_or_zero(x: pd.Series) -> Flags:
    """`negative-or-zero`: demand (of a BA or sub-BA, or its forecast) at or below zero.

    Source: Ruggles et al. 2020 / PUDL NEGATIVE_OR_ZERO, and EIA's imputation rule. A BA's load
    cannot be zero or negative. Same as the paper.
    """
    v = x.to_numpy()
    return _flags(v <= 0, lambda i: f"negative-or-zero: {mwh(v[i])} MWh")


def negative_generation(x: pd.Series, what: str) -> Flags:
    """`negative`: net generation that cannot run negative: a BA's total, or COL, NG, NUC, OIL.

    Plants draw station service when offline, so net generation dips a little below zero; only
    values below -2% of the series' 95th percentile (and below -10 MWh) are flagged. Wind, solar,
    hydro, storage and interchange are never screened for sign. Zero is not flagged: a BA whose
    plants are all off (HST, SEPA on the sample day) reports 0. Not in the paper (demand only).
    """
    v = x.to_numpy()
    high = np.nanpercentile(v, 95) if np.isfinite(v).any() else 0.0
    floor = -max(MIN_MWH, NEGATIVE_SHARE * max(float(high), 0.0))
    return _flags(v < floor, lambda i: f"negative: {mwh(v[i])} MWh of {what}")


def identical_run(x: pd.Series, flag_zero: bool) -> Flags:
    """`identical-run`: the same value three or more hours in a row (a frozen feed).

    Source: Ruggles et al. / PUDL IDENTICAL_RUN (3 hours). Differences: every hour of the run is
    flagged (PUDL keeps the first two as likely genuine; an analyst needs to see where a freeze
    starts); runs of |value| < 10 MWh are left alone (integer reporting makes small series
    repeat); zero runs only where zero is itself impossible (`flag_zero`; a nuclear-free BA
    publishes no NUC series, and solar is legitimately 0 all night).
    """
    v = x.to_numpy()
    starts = np.concatenate(([True], v[1:] != v[:-1]))  # NaN != NaN: gaps break runs
    run_id = np.cumsum(starts)
    lengths = np.bincount(run_id)[run_id]
    first = np.flatnonzero(starts)[run_id - 1]
    eligible = (np.abs(v) >= MIN_MWH) | ((v == 0) & flag_zero)
    mask = (lengths >= RUN_HOURS) & eligible & np.isfinite(v)
    # One detail per run, shared by its hours: a long freeze flags thousands of them.
    details = {
        j: f"identical-run: {mwh(v[j])} MWh for {lengths[j]} hours from {x.index[j].strftime('%Y-%m-%dT%HZ')}"
        for j in np.unique(first[mask]).tolist()
    }
    return _flags(mask, lambda i: details[int(first[i])])


def global_outlier(x: pd.Series, consumption: bool) -> Flags:
    """`global-outlier`: far from the series' median over the screened span.

    Demand and forecast: |x - median| > 9 x median (Ruggles / PUDL GLOBAL_OUTLIER). Net
    generation, interchange and fuels cross or sit near zero (a hydro-only BA, SEPA, is at 0
    half the day), where a multiple of the median means
    nothing: there |x - median| > 10 x the interquartile range, and > 3 x the 99th percentile of
    |x| (a peaker sits at 0 most hours: its IQR is 0), and > 10 MWh.
    """
    v = x.to_numpy()
    if not np.isfinite(v).any():
        return Flags(np.zeros(len(v), dtype=bool), [])
    median = float(np.nanmedian(v))
    if consumption:
        limit = GLOBAL_MEDIANS * abs(median)
    else:
        q75, q25 = np.nanpercentile(v, [75, 25])
        # a peaker sits at 0 most hours (IQR 0): then 3 x its 99th percentile
        high = GLOBAL_HIGHS * float(np.nanpercentile(np.abs(v), 99))
        limit = max(GLOBAL_IQRS * float(q75 - q25), high, MIN_MWH)
    return _flags(
        np.abs(v - median) > limit,
        lambda i: f"global-outlier: {mwh(v[i])} MWh vs series median {mwh(median)}",
    )


def spike(x: pd.Series, load_like: bool) -> Flags:
    """`spike`: one or two hours far above or below BOTH neighbours, then back.

    Source: Ruggles et al. DOUBLE_DELTA (deltas to both neighbours above 2 x the rolling 240-hour
    IQR of hourly deltas). Ours: 4 x that IQR AND 25% (load-like) or 100% (signed series and
    fuels) of the local level (the 90th percentile of |value| over 48 hours: a solar peak is
    not a spike), so white noise and the daily ramp never qualify; a two-hour plateau
    (both hours off by the same margin from the hours either side) counts too.
    """
    v = x.to_numpy()
    prev1, next1 = np.roll(v, 1), np.roll(v, -1)
    prev1[0], next1[-1] = np.nan, np.nan
    level = pd.Series(np.abs(v)).rolling(LOCAL_WINDOW, min_periods=1, center=True).quantile(0.9).to_numpy()
    share = SPIKE_SHARE["load" if load_like else "other"]
    iqr = _rolling_iqr(np.diff(v, prepend=np.nan), IQR_HOURS)
    # Load-like series without 60 hours around (no IQR yet) fall back on the share of the level;
    # signed series, noisy around zero, get no verdict then.
    combine = np.fmax if load_like else np.maximum
    limit = np.maximum(combine(SPIKE_IQRS * iqr, share * level), MIN_MWH)
    single = _off_both(v, prev1, next1, limit)
    next2 = np.roll(v, -2)
    next2[-2:] = np.nan
    with np.errstate(invalid="ignore"):
        low, high = np.fmin(v, next1), np.fmax(v, next1)
        up = (low - prev1 > limit) & (low - next2 > limit)
        down = (prev1 - high > limit) & (next2 - high > limit)
    pair = up | down  # hours t and t+1 off together
    mask = (single | pair | np.concatenate(([False], pair[:-1]))) & np.isfinite(v)
    return _flags(mask, lambda i: f"spike: {mwh(v[i])} MWh vs neighbours {_neighbours(v, i)}")


def _off_both(v: np.ndarray, before: np.ndarray, after: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """Whether v is above both or below both neighbours by more than limit (NaN: no)."""
    with np.errstate(invalid="ignore"):
        up = (v - before > limit) & (v - after > limit)
        down = (before - v > limit) & (after - v > limit)
    return np.asarray(up | down)


def _neighbours(v: np.ndarray, i: int) -> str:
    """The nearest stored values before and after hour i that are not part of the same spike."""
    before = next(
        (v[j] for j in range(i - 1, max(i - 3, -1), -1) if abs(v[j] - v[i]) > 0.2 * abs(v[i])), np.nan
    )
    after = next(
        (v[j] for j in range(i + 1, min(i + 3, len(v))) if abs(v[j] - v[i]) > 0.2 * abs(v[i])), np.nan
    )
    return f"{mwh(before)} and {mwh(after)}"


def local_outlier(x: pd.Series) -> Flags:
    """`local-outlier`: far from what the same hour on the ten days either side predicts.

    Source: Ruggles et al. / PUDL LOCAL_OUTLIER_HIGH/LOW: prediction = 48-hour rolling median x
    (1 + median over +/-10 days of the same hour of (value - rolling median) / 480-hour median);
    flagged when above the prediction by 3.5 or below by 2.5 rolling 240-hour IQRs of (value -
    rolling median). Ours adds a floor of 10% of the prediction, for very steady series.
    """
    v = x.to_numpy()
    series = pd.Series(v)
    short = series.rolling(LOCAL_WINDOW, min_periods=1, center=True).median().to_numpy()
    long = series.rolling(LOCAL_LONG, min_periods=1, center=True).median().to_numpy()
    offset = v - short
    shifted = np.vstack([np.roll(offset, s) for s in LOCAL_SHIFTS])
    for row, s in enumerate(LOCAL_SHIFTS):  # np.roll wraps: blank what came round
        shifted[row, : max(s, 0)] = np.nan
        shifted[row, len(v) + min(s, 0) :] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # hours with no same-hour neighbours: NaN
        typical = np.nanmedian(shifted, axis=0) if len(v) else shifted.sum(axis=0)
        predicted = short * (1 + typical / long)
    iqr = _rolling_iqr(offset, IQR_HOURS)
    floor = LOCAL_SHARE * np.abs(predicted)
    with np.errstate(invalid="ignore"):
        # np.maximum: no IQR yet (under 60 hours around) means no verdict
        high = v - predicted > np.maximum(LOCAL_IQRS[0] * iqr, floor)
        low = predicted - v > np.maximum(LOCAL_IQRS[1] * iqr, floor)
    return _flags(
        high | low,
        lambda i: f"local-outlier: {mwh(v[i])} MWh vs {mwh(predicted[i])} expected from nearby days",
    )


def eia_rule(x: pd.Series) -> Flags:
    """`eia-rule`: at least 1.5 x the largest value the series reported before.

    Source: EIA's EIA-930 imputation rule (a reported demand that is missing, negative, zero or
    >= 1.5 x the BA's largest past demand is replaced in EIA's adjusted series). Missing hours
    are `gaps`, negative and zero ones `negative-or-zero`; this is the third part. Ours: "before"
    is the screened span (window plus context), and the rule waits for a week of earlier values.
    """
    v = x.to_numpy()
    finite = np.isfinite(v)
    past = pd.Series(np.where(finite, v, -np.inf)).cummax().shift(1).to_numpy()
    history = np.cumsum(finite) - finite
    with np.errstate(invalid="ignore"):
        mask = finite & (history >= EIA_MIN_HISTORY) & (past > 0) & (v >= EIA_PAST_FACTOR * past)
    return _flags(mask, lambda i: f"eia-rule: {mwh(v[i])} MWh >= 1.5 x largest earlier value {mwh(past[i])}")


# ---- one series -------------------------------------------------------------------------------


def hourly(values: pd.Series) -> pd.Series:
    """Values on a complete hourly index (missing hours NaN), sorted: what the screens take."""
    if values.empty:
        return values.astype(float)
    values = values.sort_index()
    full = pd.date_range(values.index[0], values.index[-1], freq="h")
    return values.astype(float).reindex(full)


def screens_for(dataset: str, fuel: str) -> list[tuple[str, Callable[[pd.Series], Flags]]]:
    """The (check name, screen) pairs that apply to a series of this dataset (and fuel)."""
    load = dataset in LOAD_LIKE
    consumption = load and dataset != "generation"
    chosen: list[tuple[str, Callable[[pd.Series], Flags]]] = []
    if consumption:
        chosen.append(("negative-or-zero", negative_or_zero))
    if dataset == "generation" or (dataset == "fuel-mix" and fuel in NON_NEGATIVE_FUELS):
        what = fuel or "net generation"
        chosen.append(("negative", lambda x: negative_generation(x, what)))
    if load:  # fuel and interchange series are often flat by design (docs/quality.md)
        chosen.append(("identical-run", lambda x: identical_run(x, flag_zero=consumption)))
    chosen.append(("global-outlier", lambda x: global_outlier(x, consumption)))
    if not (dataset == "fuel-mix" and fuel == "NUC"):  # nuclear steps between flat levels
        chosen.append(("spike", lambda x: spike(x, load)))
    if load and dataset != "forecast":
        chosen.append(("local-outlier", local_outlier))
    if dataset in DEMAND:
        chosen.append(("eia-rule", eia_rule))
    return chosen


def screen_series(values: pd.Series, dataset: str, fuel: str = "") -> pd.DataFrame:
    """Findings (FINDING_COLUMNS) of every applicable screen over one series' values (indexed by
    period_end_utc); an hour may have several. NaN values are never flagged."""
    x = hourly(values)
    parts = []
    for name, screen in screens_for(dataset, fuel):
        found = screen(x)
        mask = found.mask & np.isfinite(x.to_numpy())
        keep = mask[found.mask]
        if keep.any():
            details = [d for d, k in zip(found.details, keep, strict=True) if k]
            parts.append(pd.DataFrame({"period_end_utc": x.index[mask], "check": name, "detail": details}))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in FINDING_COLUMNS})
    return pd.concat(parts, ignore_index=True)
