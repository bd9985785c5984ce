"""Rebuild the cassettes of this directory from the real samples in shared/eia-samples/.

    .venv/bin/python cassettes/build_cassettes.py [SAMPLES_DIR]

Four cassettes are byte-for-byte copies of the ring-attention-energy recordings. Two are
assembled here from real bodies (see README.md for what was kept verbatim and what was not):

- aeci-fuel-type-col-2023-01-01-two-pages-length16.yaml: the two gridemissions AECI/COL page
  bodies, unchanged, as two HTTP 200 interactions; request URIs from the parameters EIA echoed.
- http500-not-found-body-region-data-pacw-2023-01-01_08.yaml: the recorded HTTP 500
  ``{"error":"Not found.","code":404}`` response (body, headers and status verbatim) answering
  the region-data PACW/D request recorded in the same cassette.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml

HERE = Path(__file__).resolve().parent
BASE = "https://api.eia.gov/v2/electricity/rto"

COPIES = {
    "ring-cassette-region+fuel-type-PACW-2023-01-01_08-plus-missing-route-http500.yaml": (
        "pacw-region+fuel-type-2023-01-01_08-plus-missing-route-http500.yaml"
    ),
    "ring-cassette-fuel-type-PACW-2024-01-01_07.yaml": "pacw-fuel-type-2024-01-01_07.yaml",
    "ring-cassette-error-403-API_KEY_INVALID-region-data-ERCO.yaml": (
        "error-403-api-key-invalid-region-data-erco.yaml"
    ),
    "ring-cassette-gzip-region+fuel-type-PACW-2024-01-01_03.yaml": (
        "gzip-pacw-region+fuel-type-2024-01-01_03.yaml"
    ),
    "gridemissions-fuel-type-AECI-COL-2023-01-01-page1-offset0-length16.json": (
        "aeci-fuel-type-col-2023-01-01-page1-offset0-length16.json"
    ),
    "gridemissions-fuel-type-AECI-COL-2023-01-01-page2-offset16-length16.json": (
        "aeci-fuel-type-col-2023-01-01-page2-offset16-length16.json"
    ),
}
PACW_2023 = "pacw-region+fuel-type-2023-01-01_08-plus-missing-route-http500.yaml"
# Response headers EIA (api-umbrella) sent with the 200 responses of the PACW 2023 recording,
# minus the per-response ones (Date, Expires, Age, request ids); Content-Length is recomputed.
TEMPLATE_HEADERS = (
    "Access-Control-Allow-Headers",
    "Access-Control-Allow-Methods",
    "Access-Control-Allow-Origin",
    "Cache-Control",
    "Connection",
    "Content-Type",
    "Pragma",
    "Strict-Transport-Security",
    "Vary",
    "Via",
    "X-Cache",
    "X-Content-Type-Options",
    "X-Frame-Options",
)


def _echo_uri(route: str, params: dict[str, Any]) -> str:
    """The request URI implied by EIA's echo of the request parameters (the key left out)."""
    query: list[tuple[str, str]] = []
    for name, value in params.items():
        if name == "api_key":
            continue
        if name == "facets":
            query += [(f"facets[{f}][]", v) for f, values in value.items() for v in values]
        elif name == "data":
            query += [(f"data[{i}]", v) for i, v in enumerate(value)]
        elif name == "sort":
            for i, s in enumerate(value):
                query += [(f"sort[{i}][column]", s["column"]), (f"sort[{i}][direction]", s["direction"])]
        else:
            query.append((name, str(value)))
    return f"{BASE}/{route}/data/?{urlencode(sorted(query))}"


def build_aeci(template: dict[str, Any]) -> dict[str, Any]:
    interactions = []
    for page in ("page1-offset0-length16", "page2-offset16-length16"):
        text = (HERE / f"aeci-fuel-type-col-2023-01-01-{page}.json").read_text()
        body = json.loads(text)
        headers = {name: template[name] for name in TEMPLATE_HEADERS}
        headers["Content-Length"] = [str(len(text.encode()))]
        interactions.append(
            {
                "request": {
                    "body": None,
                    "headers": {},
                    "method": "GET",
                    "uri": _echo_uri("fuel-type-data", body["request"]["params"]),
                },
                "response": {
                    "body": {"string": text},
                    "headers": headers,
                    "status": {"code": 200, "message": "OK"},
                },
            }
        )
    return {"interactions": interactions, "version": 1}


def build_http500(ring: dict[str, Any]) -> dict[str, Any]:
    region = ring["interactions"][0]["request"]
    failed = ring["interactions"][2]
    assert failed["response"]["status"]["code"] == 500
    request = {**failed["request"], "uri": region["uri"]}
    return {"interactions": [{"request": request, "response": failed["response"]}], "version": 1}


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the pretty-printed AECI bodies) as readable literal blocks."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_Dumper.add_representer(str, _str)


def main(samples: Path) -> None:
    for source, target in COPIES.items():
        shutil.copyfile(samples / source, HERE / target)
    ring = yaml.safe_load((HERE / PACW_2023).read_text())
    template = ring["interactions"][0]["response"]["headers"]
    for name, cassette in (
        ("aeci-fuel-type-col-2023-01-01-two-pages-length16.yaml", build_aeci(template)),
        ("http500-not-found-body-region-data-pacw-2023-01-01_08.yaml", build_http500(ring)),
    ):
        (HERE / name).write_text(
            yaml.dump(cassette, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[1] / "shared" / "eia-samples")
