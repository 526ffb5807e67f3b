"""The documentation: generated pages match the code they come from, the README stays a
five-minute read, and the links of the two pages outside the site (README.md,
CONTRIBUTING.md) resolve. Links inside docs/ are checked by `make docs` (MkDocs, strict)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from consumer.config import VARIABLES
from consumer.dev import generated_docs
from consumer.providers import PROVIDERS

ROOT = Path(__file__).resolve().parents[2]
# A newcomer's five minutes: past this, the text belongs in a page under docs/.
README_MAX_LINES = 200
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(markdown: str) -> set[str]:
    """Heading ids as MkDocs (and GitHub) make them: lower case, punctuation dropped,
    spaces as hyphens."""
    return {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in markdown.splitlines()
        if line.startswith("#")
    }


def test_the_generated_pages_are_fresh():
    stale = generated_docs.stale()
    assert not stale, f"run `python -m consumer.dev.generated_docs`: {stale} are stale"


def test_the_configuration_page_documents_every_variable_and_provider_secret():
    page = (ROOT / "docs" / "configuration.md").read_text()
    for variable in VARIABLES:
        assert f"| `{variable.name}` |" in page
        assert variable.help, f"{variable.name} needs a meaning for the docs"
    for provider in PROVIDERS:
        assert f"`{provider.name.upper()}_WEBHOOK_SECRET`" in page


def test_the_staleness_check_notices_a_change(tmp_path):
    for page in generated_docs.rendered():
        (tmp_path / page.name).write_text(page.read_text())
    assert generated_docs.stale(tmp_path) == []
    contract = tmp_path / "data-contract.md"
    contract.write_text(contract.read_text().replace("| `event_id` | string |", "| x |"))
    assert generated_docs.stale(tmp_path) == [contract]


def test_the_readme_is_a_five_minute_read():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < README_MAX_LINES


@pytest.mark.parametrize("page", ["README.md", "CONTRIBUTING.md"])
def test_the_links_outside_the_site_resolve(page):
    text = (ROOT / page).read_text()
    links = [link for link in _LINK.findall(text) if "://" not in link]
    assert links, "the walk sees no links"
    for link in links:
        path, _, anchor = link.partition("#")
        target = (ROOT / page).parent / path if path else ROOT / page
        assert target.exists(), f"{page}: {link} points at nothing"
        if anchor:
            assert anchor in _anchors(target.read_text()), f"{page}: no heading for {link}"


def test_docs_never_point_outside_the_repository():
    for page in [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *(ROOT / "docs").rglob("*.md")]:
        for link in _LINK.findall(page.read_text()):
            if "://" in link:
                continue
            target = (page.parent / link.partition("#")[0]).resolve()
            assert target.is_relative_to(ROOT), f"{page.name}: {link} leaves the repository"
