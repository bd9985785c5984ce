"""Consistency checks across series: identities EIA-930's hourly data should satisfy, per BA.

Only a store holding all seven datasets can make these. Each check computes a residual that an
identity says is zero: demand - (net generation - total interchange); the fuels' sum - net
generation; the interchange links' sum - total interchange; A->B + B->A; forecast - demand.

Real BAs do not satisfy them exactly, and some never come close: on the all-BA sample day BPAT's
demand is off its net generation minus interchange by 20-58% every hour, and NYIS->PJM differs
from -(PJM->NYIS) by hundreds of MWh all day (different metering points, a reporting convention,
not an hourly error). So an hour is flagged when its residual departs from the BA's OWN usual
residual: the rolling one-week median, by more than both a share of the hour's scale (demand,
net generation, gross interchange) and four rolling IQRs of the residual. A BA whose residual is
always large but steady is never flagged; one whose residual is usually ~0 is flagged the hour
its demand drops 30% while its generation does not.

The residual cannot say which series is wrong. The finding goes on the series the identity is
about (demand for energy balance, net generation for the fuel sum, total interchange for the
interchange sum, the A->B series for the pair, the forecast for the forecast check), and it is
skipped in an hour where a member series already has a per-series finding: that finding
explains the mismatch, and names the series at fault. docs/quality.md gives the tolerances and
the share of hours flagged on real samples.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd

from gridpulse_cli.quality import FINDING_COLUMNS, Flags, mwh

# Thresholds (docs/quality.md, "Consistency across series", gives the measurements behind them).
BASELINE_HOURS = 168  # the usual residual: rolling median (and IQR) over a week, centred
MIN_BASELINE_HOURS = 12  # fewer hours with every member stored: no verdict
SPREAD_IQRS = 4.0  # departure > 4 rolling IQRs of the residual ...
FLOOR_MWH = 10.0  # ... and > 10 MWh ...
SHARES = {  # ... and > this share of the hour's scale (in the order check_ba runs them)
    "interchange-pair": 0.25,
    "interchange-sum": 0.10,
    "fuel-sum": 0.10,
    "energy-balance": 0.10,
    "forecast-miss": 0.50,
}
CONSISTENCY_CHECKS = tuple(SHARES)


@dataclass(frozen=True)
class Departure:
    """Where a residual leaves its usual level: the mask and, per hour, the usual level."""

    mask: np.ndarray
    usual: np.ndarray


def departures(residual: pd.Series, scale: pd.Series, share: float) -> Departure:
    """Hours whose residual departs from its rolling median by more than max(share x scale,
    SPREAD_IQRS x rolling IQR, FLOOR_MWH). NaN residuals (a member missing) are never flagged."""
    rolling = residual.rolling(BASELINE_HOURS, min_periods=MIN_BASELINE_HOURS, center=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        usual = rolling.median().to_numpy()
        iqr = (rolling.quantile(0.75) - rolling.quantile(0.25)).to_numpy()
    r = residual.to_numpy()
    limit = np.maximum(np.maximum(share * np.abs(scale.to_numpy()), SPREAD_IQRS * iqr), FLOOR_MWH)
    with np.errstate(invalid="ignore"):
        mask = np.abs(r - usual) > limit  # NaN anywhere: False
    return Departure(np.asarray(mask, dtype=bool), usual)


def _signed(value: float) -> str:
    return ("+" if value >= 0 else "") + mwh(value)


def _flags(mask: np.ndarray, explained: np.ndarray, describe: Callable[[int], str]) -> Flags:
    mask = mask & ~explained
    return Flags(mask, [describe(int(i)) for i in np.flatnonzero(mask)])


def energy_balance(
    demand: pd.Series, generation: pd.Series, interchange: pd.Series, explained: np.ndarray
) -> Flags:
    """`energy-balance` (on demand): demand departs from net generation - total interchange.

    EIA-930 defines demand as net generation minus total interchange (EIA's "About the data");
    many BAs compute it that way. Tolerance: 10% of demand beyond the BA's usual gap.
    """
    residual = demand - (generation - interchange)
    found = departures(residual, demand, SHARES["energy-balance"])
    d, g, t = demand.to_numpy(), generation.to_numpy(), interchange.to_numpy()
    return _flags(
        found.mask,
        explained,
        lambda i: (
            f"energy-balance: demand {mwh(d[i])} MWh vs net generation {mwh(g[i])} - interchange "
            f"{mwh(t[i])} = {mwh(g[i] - t[i])} (usual gap {_signed(found.usual[i])})"
        ),
    )


def complete_sum(parts: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    """The hourly sum of the columns with values in the span, NaN in an hour where one of them
    has none (a missing part would make any sum short); and those columns."""
    reported = parts.loc[:, parts.notna().any()]
    return reported.sum(axis=1).where(reported.notna().all(axis=1) & (reported.shape[1] > 0)), reported


def fuel_sum(generation: pd.Series, fuels: pd.DataFrame, explained: np.ndarray) -> Flags:
    """`fuel-sum` (on net generation): the fuels' net generation does not add up to the total.

    An hour counts only when every fuel series with values in the span has one that hour (a
    missing fuel would make any sum short). Tolerance: 10% of net generation beyond the usual.
    """
    total, _reported = complete_sum(fuels)
    found = departures(total - generation, generation, SHARES["fuel-sum"])
    s, g = total.to_numpy(), generation.to_numpy()
    return _flags(
        found.mask,
        explained,
        lambda i: (
            f"fuel-sum: fuels add to {mwh(s[i])} MWh vs net generation {mwh(g[i])} "
            f"(usual gap {_signed(found.usual[i])})"
        ),
    )


def interchange_sum(total: pd.Series, links: pd.DataFrame, explained: np.ndarray) -> Flags:
    """`interchange-sum` (on total interchange): the BA-to-BA links do not add up to the total.

    Scale: the gross interchange (sum of |link|), as a BA's net interchange can sit near zero.
    Tolerance: 10% of it beyond the usual gap.
    """
    linked, reported = complete_sum(links)
    gross = reported.abs().sum(axis=1)
    found = departures(linked - total, gross, SHARES["interchange-sum"])
    s, t = linked.to_numpy(), total.to_numpy()
    return _flags(
        found.mask,
        explained,
        lambda i: (
            f"interchange-sum: links add to {mwh(s[i])} MWh vs total interchange {mwh(t[i])} "
            f"(usual gap {_signed(found.usual[i])})"
        ),
    )


def interchange_pair(
    outward: pd.Series, inward: pd.Series, names: tuple[str, str], explained: np.ndarray
) -> Flags:
    """`interchange-pair` (on A->B): A->B is not minus B->A, as each side reports it.

    Catches a flipped sign (the sum doubles) or one side's feed going wrong. Pairs often differ
    steadily (metering points); tolerance: 25% of the larger side beyond the pair's usual sum.
    """
    scale = pd.concat([outward.abs(), inward.abs()], axis=1).max(axis=1)
    found = departures(outward + inward, scale, SHARES["interchange-pair"])
    a, b = outward.to_numpy(), inward.to_numpy()
    ab, ba = names
    return _flags(
        found.mask,
        explained,
        lambda i: (
            f"interchange-pair: {ab} {mwh(a[i])} MWh but {ba} {mwh(b[i])} "
            f"(usual sum {_signed(found.usual[i])})"
        ),
    )


def forecast_miss(forecast: pd.Series, demand: pd.Series, explained: np.ndarray) -> Flags:
    """`forecast-miss` (on the forecast): the day-ahead forecast departs from demand far more
    than the BA's forecasts usually do: 50% of demand and four IQRs of its usual error (a
    forecast in the wrong unit or hour, or a stale copy)."""
    found = departures(forecast - demand, demand, SHARES["forecast-miss"])
    f, d = forecast.to_numpy(), demand.to_numpy()
    return _flags(
        found.mask,
        explained,
        lambda i: (
            f"forecast-miss: forecast {mwh(f[i])} MWh vs demand {mwh(d[i])} "
            f"(usual error {_signed(found.usual[i])})"
        ),
    )


# ---- one BA -----------------------------------------------------------------------------------


@dataclass
class BASeries:
    """One BA's stored series that the checks relate, by series_key: region-data by dataset,
    fuel-mix by fuel, interchange by neighbour (outward: this BA's A->B; inward: B's B->A)."""

    area: str
    region: dict[str, int] = field(default_factory=dict)
    fuels: dict[str, int] = field(default_factory=dict)
    outward: dict[str, int] = field(default_factory=dict)
    inward: dict[str, int] = field(default_factory=dict)

    def member_keys(self) -> list[int]:
        return [*self.region.values(), *self.fuels.values(), *self.outward.values(), *self.inward.values()]

    def attached(self) -> list[int]:
        """The series findings go on (each gets exactly what its check finds, possibly nothing)."""
        on = [
            self.region[d]
            for d in ("demand", "generation", "total-interchange", "forecast")
            if d in self.region
        ]
        return on + list(self.outward.values())


def check_ba(
    ba: BASeries, values: Mapping[int, pd.Series], explained: Mapping[int, np.ndarray]
) -> dict[int, pd.DataFrame]:
    """Every consistency check that one BA's stored series allow. `values` holds each of
    ba.member_keys() on one common complete hourly index, `explained` each one's hours with a finding
    of its own. Return, per attached series, its findings (FINDING_COLUMNS).

    The checks triangulate: they run in an order where each one's findings explain the next
    one's mismatches. A flipped link breaks its pair AND the interchange sum: the pair names the
    link. A wrong net generation breaks the fuel sum AND the energy balance: the fuel sum names
    net generation; a wrong total interchange, the interchange sum names it. Only a balance
    that breaks alone is put on demand; a forecast-miss where demand is suspect is not made.
    """
    hours = pd.DatetimeIndex(next(iter(values.values())).index if values else [], tz="UTC")
    marked = {key: np.asarray(mask, dtype=bool).copy() for key, mask in explained.items()}
    found: dict[int, list[tuple[str, Flags]]] = {key: [] for key in ba.attached()}

    def why(*keys: int) -> np.ndarray:
        return np.logical_or.reduce([marked.get(k, np.zeros(len(hours), dtype=bool)) for k in keys])

    def record(key: int, check: str, flags: Flags) -> None:
        found[key].append((check, flags))
        marked[key] = why(key) | flags.mask

    for name, check, key, members in _relations(ba, values):
        record(key, name, check(why(*members)))
    return {key: _frame(hours, checks) for key, checks in found.items()}


Check = Callable[[np.ndarray], Flags]


def _relations(ba: BASeries, values: Mapping[int, pd.Series]) -> list[tuple[str, Check, int, list[int]]]:
    """(check name, the check given its explained hours, the series it flags, its members), in
    the order check_ba runs them."""
    key = ba.region
    region = {dataset: values[k] for dataset, k in key.items()}
    out: list[tuple[str, Check, int, list[int]]] = []
    for nb, link in ba.outward.items():
        if nb in ba.inward:
            pair = (values[link], values[ba.inward[nb]], (f"{ba.area}->{nb}", f"{nb}->{ba.area}"))
            out.append(("interchange-pair", partial(interchange_pair, *pair), link, [link, ba.inward[nb]]))
    if "total-interchange" in region and ba.outward:
        links = pd.DataFrame({nb: values[k] for nb, k in ba.outward.items()})
        check = partial(interchange_sum, region["total-interchange"], links)
        out.append(
            (
                "interchange-sum",
                check,
                key["total-interchange"],
                [key["total-interchange"], *ba.outward.values()],
            )
        )
    if "generation" in region and ba.fuels:
        fuels = pd.DataFrame({fuel: values[k] for fuel, k in ba.fuels.items()})
        check = partial(fuel_sum, region["generation"], fuels)
        out.append(("fuel-sum", check, key["generation"], [key["generation"], *ba.fuels.values()]))
    balance = ("demand", "generation", "total-interchange")
    if set(balance) <= region.keys():
        check = partial(energy_balance, region["demand"], region["generation"], region["total-interchange"])
        out.append(("energy-balance", check, key["demand"], [key[d] for d in balance]))
    if {"forecast", "demand"} <= region.keys():
        check = partial(forecast_miss, region["forecast"], region["demand"])
        out.append(("forecast-miss", check, key["forecast"], [key["forecast"], key["demand"]]))
    return out


def _frame(hours: pd.DatetimeIndex, checks: list[tuple[str, Flags]]) -> pd.DataFrame:
    parts = [
        pd.DataFrame({"period_end_utc": hours[flags.mask], "check": name, "detail": flags.details})
        for name, flags in checks
        if flags.mask.any()
    ]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in FINDING_COLUMNS})
    return pd.concat(parts, ignore_index=True)
