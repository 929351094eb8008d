"""The README tells the truth: its curl examples answer what they claim, its table is complete."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from service import activations

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
CURL = re.compile(
    r"curl -s localhost:8000(?P<path>/\w+) -H 'content-type: application/json' \\\n"
    r"\s+-d '(?P<body>[^']+)'\n# Returns => (?P<returns>.+)"
)
EXAMPLES = [m.groupdict() for m in CURL.finditer(README)]


def test_readme_has_curl_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("example", EXAMPLES, ids=[e["body"][:40] for e in EXAMPLES])
async def test_readme_curl_example_returns_what_it_claims(
    client: httpx.AsyncClient, example: dict[str, str]
) -> None:
    r = await client.post(example["path"], json=json.loads(example["body"]))
    claim = example["returns"].split("   (")[0].strip()
    status = re.match(r"(\d{3}) ", claim)
    if status:
        assert r.status_code == int(status.group(1))
        claim = claim[len(status.group(0)) :]
    else:
        assert r.status_code == 200
    if claim.startswith("{") and claim.endswith("}") and "..." not in claim:
        assert r.json() == json.loads(claim)
        return
    for fragment in re.split(r"\.\.\.|\s{2,}", claim.strip("{} ")):
        fragment = fragment.strip(" ,")
        if fragment:
            assert fragment in r.text, (fragment, r.text)


def test_readme_activation_table_lists_every_function_and_alias() -> None:
    rows = {line.split("|")[1].strip(" `"): line for line in README.splitlines() if line.startswith("| `")}
    for entry in activations.entries():
        assert entry.name in rows, entry.name
        for alias in entry.aliases:
            assert f"`{alias}`" in rows[entry.name], alias
        for p in entry.params:
            assert f"`{p.name}`" in rows[entry.name], p.name
