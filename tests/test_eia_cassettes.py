"""The EIA client replaying real EIA API v2 responses (vcrpy cassettes in ``cassettes/``).

Every cassette holds responses EIA really sent (provenance: ``cassettes/README.md``). They are
played back only (``record_mode="none"``): a request the cassette cannot answer raises instead of
reaching the network.
"""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from vcr.errors import CannotOverwriteExistingCassetteException

from gridpulse_cli.catalog import FUEL_TYPE_DATA, REGION_DATA
from gridpulse_cli.eia import EIAClient, Page, RateLimiter
from gridpulse_cli.errors import EIAKeyError, EIAUnavailableError
from gridpulse_cli.files import read_observations_csv, write_observations_csv
from gridpulse_cli.normalize import normalize_rows
from testing.vcr_helpers import BASE_URL, CASSETTES, eia_query, eia_query_key, use_eia_cassette

KEY = "cassette-test-key-0123456789abcdef"

AECI = "aeci-fuel-type-col-2023-01-01-two-pages-length16.yaml"
PACW_2023 = "pacw-region+fuel-type-2023-01-01_08-plus-missing-route-http500.yaml"
PACW_2024 = "pacw-fuel-type-2024-01-01_07.yaml"
KEY_403 = "error-403-api-key-invalid-region-data-erco.yaml"
HTTP_500 = "http500-not-found-body-region-data-pacw-2023-01-01_08.yaml"
GZIP = "gzip-pacw-region+fuel-type-2024-01-01_03.yaml"


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def client(**kw: Any) -> EIAClient:
    settings: dict[str, Any] = {
        "limiter": RateLimiter(1000, 100000),
        "timeout": 5.0,
        "max_tries": 3,
        "retry_base": 0,
    }
    settings.update(kw)
    return EIAClient(BASE_URL, KEY, **settings)


def load_cassette(name: str) -> list[dict[str, Any]]:
    """The interactions of a cassette as stored (binary bodies stay bytes)."""
    text = (CASSETTES / name).read_text()
    return yaml.load(text, Loader=yaml.SafeLoader)["interactions"]  # !!binary is safe


def recorded_body(interaction: dict[str, Any]) -> dict[str, Any]:
    raw = interaction["response"]["body"]["string"]
    if isinstance(raw, bytes):
        raw = gzip.decompress(raw)
    return json.loads(raw)


def without_key(body: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(json.dumps(body))
    body["request"]["params"].pop("api_key", None)
    return body


def rows_of(pages: list[Page]) -> list[dict[str, Any]]:
    return [row for page in pages for row in page.rows]


def assert_archive_clean(pages: list[Page], recorded: list[dict[str, Any]]) -> None:
    """The stored audit copy is the recorded body, minus the echoed key and nothing else."""
    assert len(pages) == len(recorded)
    for page, body in zip(pages, recorded, strict=True):
        archived = page.archive_bytes()
        assert b"api_key" not in archived
        assert KEY.encode() not in archived
        assert json.loads(archived) == without_key(body)
        assert "api_key" not in json.dumps(page.params)


# ---- the matcher ----------------------------------------------------------------------------


class _Req:
    def __init__(self, uri: str) -> None:
        self.uri = uri


def test_matcher_normalises_what_differs_between_clients() -> None:
    recorded = (
        "https://api.eia.gov/v2/electricity/rto/region-data/data/?data%5B0%5D=value&end=2023-01-08"
        "&facets%5Brespondent%5D%5B%5D=PACW&facets%5Btype%5D%5B%5D=D&frequency=hourly&length=5000"
        "&sort%5B0%5D%5Bcolumn%5D=period&sort%5B0%5D%5Bdirection%5D=asc&start=2023-01-01"
    )
    ours = (
        "https://api.eia.gov/v2/electricity/rto/region-data/data/?frequency=hourly&data%5B0%5D=value"
        "&facets%5Btype%5D%5B%5D=D&facets%5Brespondent%5D%5B%5D=PACW&start=2023-01-01T00&end=2023-01-08T00"
        "&sort%5B0%5D%5Bcolumn%5D=period&sort%5B0%5D%5Bdirection%5D=asc"
        "&sort%5B1%5D%5Bcolumn%5D=respondent&sort%5B1%5D%5Bdirection%5D=asc&offset=0&length=5000"
        "&api_key=anything"
    )
    eia_query(_Req(recorded), _Req(ours))  # no AssertionError
    key = eia_query_key(ours)
    assert key["facets"] == {("respondent", "PACW"), ("type", "D")}
    assert (key["start"], key["end"], key["offset"], key["length"]) == (
        "2023-01-01T00",
        "2023-01-08T00",
        0,
        5000,
    )

    for changed in (
        ours.replace("PACW", "BPAT"),
        ours.replace("end=2023-01-08T00", "end=2023-01-08T01"),
        ours.replace("offset=0", "offset=5000"),
        ours.replace("length=5000", "length=16"),
        ours.replace("frequency=hourly", "frequency=local-hourly"),
        ours + "&facets%5Btype%5D%5B%5D=NG",
    ):
        with pytest.raises(AssertionError):
            eia_query(_Req(recorded), _Req(changed))


def test_an_unrecorded_request_fails_instead_of_reaching_the_network() -> None:
    eia = client()
    with use_eia_cassette(PACW_2023), pytest.raises(CannotOverwriteExistingCassetteException):
        eia.fetch_window(
            REGION_DATA, {"respondent": ["PACW"], "type": ["D"]}, utc(2023, 1, 1), utc(2023, 1, 9)
        )


# ---- paging and value shapes ------------------------------------------------------------------


def test_aeci_two_pages_of_16_give_24_rows_once() -> None:
    """Pre-2.1.6 shapes: ``total`` an int, ``value`` a number; the warning is on the last page too."""
    recorded = [recorded_body(i) for i in load_cassette(AECI)]
    eia = client(page_size=16)
    with use_eia_cassette(AECI) as cassette:
        pages = eia.fetch_window(
            FUEL_TYPE_DATA,
            {"respondent": ["AECI"], "fueltype": ["COL"]},
            utc(2023, 1, 1),
            utc(2023, 1, 1, 23),
        )
        assert cassette.play_count == 2
        assert cassette.all_played
    assert [len(p.rows) for p in pages] == [16, 8]
    assert [p.total for p in pages] == [24, 24]
    assert all(type(p.body["response"]["total"]) is int for p in pages)
    assert all(p.body["response"]["warnings"][0]["warning"] == "incomplete return" for p in pages)
    rows = rows_of(pages)
    assert [r["period"] for r in rows] == [f"2023-01-01T{h:02d}" for h in range(24)]
    assert all(type(r["value"]) is int for r in rows)
    assert rows == [r for body in recorded for r in body["response"]["data"]]
    assert eia.stats.requests == 2 and eia.stats.retries == 0 and eia.stats.duplicates == 0
    assert [p.params["offset"] for p in pages] == ["0", "16"]

    frame = normalize_rows(rows)
    assert set(frame["series_id"]) == {"EBA.AECI-ALL.NG.COL.H"}
    assert frame["value_mwh"].tolist() == [float(r["value"]) for r in rows]
    assert (frame["quality_flag"] == "good").all()
    assert_archive_clean(pages, recorded)


def test_pacw_2024_fuel_mix_values_are_kept_to_the_digit() -> None:
    (interaction,) = load_cassette(PACW_2024)
    recorded = recorded_body(interaction)
    recorded_rows = recorded["response"]["data"]
    eia = client()
    with use_eia_cassette(PACW_2024) as cassette:
        pages = eia.fetch_window(FUEL_TYPE_DATA, {"respondent": ["PACW"]}, utc(2024, 1, 1), utc(2024, 1, 7))
        assert cassette.play_count == 1
    rows = rows_of(pages)
    assert len(rows) == 725 and pages[0].total == 725
    assert pages[0].body["response"]["total"] == "725"
    assert rows == recorded_rows
    assert all(isinstance(r["value"], str) for r in rows)

    frame = normalize_rows(rows)
    assert len(frame) == 725
    got = {
        (s, t.strftime("%Y-%m-%dT%H")): v
        for s, t, v in frame[["series_id", "period_end_utc", "value_mwh"]].itertuples(index=False)
    }
    for row in recorded_rows:
        value = got[(f"EBA.PACW-ALL.NG.{row['fueltype']}.H", row["period"])]
        assert value == float(row["value"]), row
    assert sorted(frame["counterpart"].unique()) == ["NG", "OTH", "SUN", "WAT", "WND"]
    wind = frame[frame["series_id"] == "EBA.PACW-ALL.NG.WND.H"]
    assert len(wind) == 145
    assert int((wind["value_mwh"] < 0).sum()) == 40
    assert (wind.loc[wind["value_mwh"] < 0, "quality_flag"] == "good").all()
    assert ((frame["counterpart"] == "NG") & (frame["value_mwh"] == 0)).any()  # zeros are data too
    assert frame["period_end_utc"].min() == utc(2024, 1, 1) and frame["period_end_utc"].max() == utc(
        2024, 1, 7
    )
    assert_archive_clean(pages, [recorded])


def test_pacw_2024_values_survive_the_observation_csv_exactly(tmp_path: Path) -> None:
    with use_eia_cassette(PACW_2024):
        pages = client().fetch_window(
            FUEL_TYPE_DATA, {"respondent": ["PACW"]}, utc(2024, 1, 1), utc(2024, 1, 7)
        )
    frame = normalize_rows(rows_of(pages))
    path = tmp_path / "obs.csv"
    with path.open("w", newline="") as out:
        write_observations_csv(frame, out)
    with path.open(newline="") as stream:
        (back,) = list(read_observations_csv(stream, source=str(path)))
    assert back["value_mwh"].tolist() == frame["value_mwh"].tolist()
    assert back["series_id"].tolist() == frame["series_id"].tolist()
    assert (back["period_end_utc"] == frame["period_end_utc"]).all()


def test_pacw_2023_region_demand_169_rows_with_string_total() -> None:
    interactions = load_cassette(PACW_2023)
    eia = client()
    with use_eia_cassette(PACW_2023) as cassette:
        demand = eia.fetch_window(
            REGION_DATA, {"respondent": ["PACW"], "type": ["D"]}, utc(2023, 1, 1), utc(2023, 1, 8)
        )
        fuel = eia.fetch_window(FUEL_TYPE_DATA, {"respondent": ["PACW"]}, utc(2023, 1, 1), utc(2023, 1, 8))
        assert cassette.play_count == 2  # the wholesale-prices 500s are never asked for
    (page,) = demand
    assert page.body["response"]["total"] == "169" and page.total == 169
    assert len(page.rows) == 169
    assert page.rows[0]["period"] == "2023-01-01T00" and page.rows[-1]["period"] == "2023-01-08T00"
    frame = normalize_rows(page.rows)
    assert set(frame["series_id"]) == {"EBA.PACW-ALL.D.H"}
    assert frame["value_mwh"].tolist() == [float(r["value"]) for r in page.rows]
    assert frame["period_end_utc"].is_monotonic_increasing and frame["period_end_utc"].is_unique

    (fuel_page,) = fuel
    assert fuel_page.total == 845 and len(fuel_page.rows) == 845
    assert normalize_rows(fuel_page.rows)["series_id"].nunique() == 5
    assert_archive_clean(demand + fuel, [recorded_body(i) for i in interactions[:2]])


# ---- errors ---------------------------------------------------------------------------------


def test_403_api_key_invalid_is_fatal_at_once() -> None:
    eia = client(max_tries=5)
    with use_eia_cassette(KEY_403, allow_playback_repeats=True) as cassette:
        with pytest.raises(EIAKeyError) as caught:
            eia.fetch_window(
                REGION_DATA, {"respondent": ["ERCO"], "type": ["D"]}, utc(2024, 1, 1), utc(2024, 1, 2)
            )
        assert cassette.play_count == 1  # no retry, although repeats were allowed
    message = str(caught.value)
    assert "\n" not in message
    assert "API_KEY_INVALID" in message and "invalid api_key" in message
    assert KEY not in message
    assert eia.stats.requests == 1 and eia.stats.retries == 0


@pytest.mark.parametrize("max_tries", [1, 3])
def test_500_with_error_body_is_retried_then_unavailable(max_tries: int) -> None:
    (interaction,) = load_cassette(HTTP_500)
    assert interaction["response"]["status"]["code"] == 500
    assert interaction["response"]["body"]["string"] == '{"error":"Not found.","code":404}'
    eia = client(max_tries=max_tries)
    with use_eia_cassette(HTTP_500, allow_playback_repeats=True) as cassette:
        with pytest.raises(EIAUnavailableError) as caught:
            eia.fetch_window(
                REGION_DATA, {"respondent": ["PACW"], "type": ["D"]}, utc(2023, 1, 1), utc(2023, 1, 8)
            )
        assert cassette.play_count == max_tries
    message = str(caught.value)
    assert "\n" not in message
    assert "HTTP 500" in message and "Not found." in message
    assert f"failed {max_tries} times" in message and "region-data" in message
    assert KEY not in message
    assert eia.stats.requests == max_tries and eia.stats.retries == max_tries - 1


# ---- gzip -----------------------------------------------------------------------------------


def test_gzip_cassette_bodies_are_stored_compressed_and_decode() -> None:
    interactions = load_cassette(GZIP)
    for interaction in interactions:
        stored = interaction["response"]["body"]["string"]
        assert isinstance(stored, bytes) and stored[:2] == b"\x1f\x8b"
        assert interaction["response"]["headers"]["Content-Encoding"] == ["gzip"]
    recorded = [recorded_body(i) for i in interactions]

    eia = client()
    with use_eia_cassette(GZIP) as cassette:
        demand = eia.fetch_window(
            REGION_DATA, {"respondent": ["PACW"], "type": ["D"]}, utc(2024, 1, 1), utc(2024, 1, 3)
        )
        fuel = eia.fetch_window(FUEL_TYPE_DATA, {"respondent": ["PACW"]}, utc(2024, 1, 1), utc(2024, 1, 3))
        assert cassette.play_count == 2
    assert demand[0].total == 49 and len(demand[0].rows) == 49
    assert fuel[0].total == 245 and len(fuel[0].rows) == 245
    assert demand[0].rows == recorded[0]["response"]["data"]
    assert fuel[0].rows == recorded[1]["response"]["data"]
    frame = normalize_rows(rows_of(demand + fuel))
    assert len(frame) == 49 + 245
    assert (frame.loc[frame["counterpart"] == "WND", "value_mwh"] < 0).any()
    assert_archive_clean(demand + fuel, recorded)


# ---- the cassettes themselves ---------------------------------------------------------------

_KEYLIKE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9]{32,}(?![A-Za-z0-9])")
_API_KEY_VALUE = re.compile(r"""api_key["']?\s*[=:]\s*\[?\s*["']?([^"'&\s,\]}]*)""")


def _texts(path: Path) -> list[str]:
    """Every piece of text a cassette or sample file carries (gzip bodies decompressed)."""
    if path.suffix == ".json":
        return [path.read_text()]
    texts = []
    for interaction in load_cassette(path.name):
        request, response = interaction["request"], interaction["response"]
        texts += [request["uri"], json.dumps(request["headers"]), json.dumps(response["headers"])]
        body = response["body"]["string"]
        texts.append(gzip.decompress(body).decode() if isinstance(body, bytes) else body)
    return texts


@pytest.mark.parametrize(
    "path", sorted(p for p in CASSETTES.iterdir() if p.suffix in (".yaml", ".json")), ids=lambda p: p.name
)
def test_no_real_looking_key_in_any_cassette(path: Path) -> None:
    for text in _texts(path):
        assert not _KEYLIKE.search(text), _KEYLIKE.search(text)
        for value in _API_KEY_VALUE.findall(text):
            assert value in ("REDACTED", ""), f"api_key value {value!r} in {path.name}"


def test_every_cassette_is_used_and_parses() -> None:
    names = {p.name for p in CASSETTES.glob("*.yaml")}
    assert names == {AECI, PACW_2023, PACW_2024, KEY_403, HTTP_500, GZIP}
    for name in names:
        for interaction in load_cassette(name):
            assert interaction["request"]["uri"].startswith(BASE_URL + "/electricity/")
            body = recorded_body(interaction)
            if interaction["response"]["status"]["code"] == 200:
                assert isinstance(body["response"]["data"], list) and body["response"]["data"]
                assert body["request"]["params"].get("api_key") == "REDACTED"
            else:
                assert "error" in body
