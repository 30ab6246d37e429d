"""Every relative link and image in README.md and docs/ points at a file of the repository (`mkdocs build --strict`
checks the docs pages on their own, but not README.md, which GitHub shows first)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
# Files a run makes and a person copies into docs/ to show (git-ignored where they are made): while one is
# missing, its test is skipped with the command that makes it, never silently passed.
MADE_BY_A_RUN = {"docs/images/latency.png": "`make demo`, then copy artifacts/demo/latency.png there"}


def local_links(page: Path, text: str | None = None) -> list[str]:
    """Targets of the page's Markdown links and images that are paths in the repository (no URL, no bare anchor),
    relative to the repository root; code blocks are not read. ``text``: the page's text (default: read it)."""
    targets = []
    text = page.read_text(encoding="utf-8") if text is None else text
    for target in LINK.findall(FENCE.sub("", text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        targets.append(path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path))
    return targets


def all_links() -> list[tuple[str, str]]:
    return [(page.relative_to(REPO).as_posix(), t) for page in PAGES for t in local_links(page)]


def test_the_pages_have_local_links_at_all():
    assert {"docs/troubleshooting.md", "docs/images/latency.png"} <= {t for _, t in all_links()}


@pytest.mark.parametrize("page,target", all_links())
def test_every_local_link_and_image_exists(page, target):
    if not (REPO / target).exists() and target in MADE_BY_A_RUN:
        pytest.skip(f"{page} shows {target}, which is not committed yet: {MADE_BY_A_RUN[target]}")
    assert (REPO / target).exists(), f"{page} links to {target}, which does not exist"


def test_a_link_to_a_missing_file_is_found():
    text = "see [x](missing.md#a), ![y](../README.md), [u](https://example.org), [z](#here)\n```\n[no](code.md)\n```\n"
    links = local_links(REPO / "docs" / "page.md", text)
    assert links == ["docs/missing.md", "README.md"]
    assert [t for t in links if not (REPO / t).exists()] == ["docs/missing.md"]
