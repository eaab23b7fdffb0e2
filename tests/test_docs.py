"""The documentation's relative links resolve, and none leads outside the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def tracked(pattern: str) -> list[Path]:
    """Files git tracks (what a clone has); outside a git checkout, every match but virtualenvs."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", pattern], cwd=ROOT, capture_output=True, check=True,
                             timeout=30).stdout.decode()
        return [ROOT / name for name in out.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        return [p for p in ROOT.rglob(pattern) if not any(part.startswith(".venv") for part in p.parts)]


def prose(text: str) -> str:
    """The text without code: a link shown inside a code block or inline code is not a link."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def anchors(markdown: Path) -> set[str]:
    """Heading anchors as GitHub makes them: lower case, punctuation dropped, spaces to hyphens."""
    slugs = set()
    for heading in _HEADING.findall(_FENCE.sub("", markdown.read_text(encoding="utf-8"))):
        text = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower())
        slugs.add(text.replace(" ", "-"))
    return slugs


def relative_links(markdown: Path) -> list[str]:
    return [target for target in _LINK.findall(prose(markdown.read_text(encoding="utf-8")))
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]  # http:, https:, mailto: are not checked here


MARKDOWN = tracked("*.md")


def test_the_repository_has_its_documentation() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in MARKDOWN}
    assert {"README.md", "docs/architecture.md", "docs/operations.md", "docs/local-stack.md",
            "bench/README.md", "healthcare_emulator/README.md", "terraform/README.md"} <= names


@pytest.mark.parametrize("markdown", MARKDOWN, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve_inside_the_repository(markdown: Path) -> None:
    problems = []
    for target in relative_links(markdown):
        path, _, fragment = target.partition("#")
        resolved = (markdown.parent / path).resolve() if path else markdown
        if not resolved.is_relative_to(ROOT):
            problems.append(f"{target}: outside the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            problems.append(f"{target}: no heading #{fragment} in {resolved.relative_to(ROOT)}")
    assert problems == []


def test_no_tracked_file_points_at_the_shared_folder_beside_the_repository() -> None:
    outside = "../" + "shared/"  # spelled in two parts so that this file does not match itself
    mentions = []
    texts = [p for p in tracked("*") if p.is_file() and p.suffix in {".md", ".py", ".tf", ".toml", ".txt", ".sh", ""}]
    for path in texts:
        if outside in path.read_text(encoding="utf-8", errors="replace"):
            mentions.append(path.relative_to(ROOT).as_posix())
    assert mentions == []


def test_the_link_checker_finds_broken_links(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title here\n\n[ok](#title-here) [code](`x`) `[not](a link)`\n"
                    "[web](https://example.com) [gone](missing.md)\n```\n[fenced](nope.md)\n```\n",
                    encoding="utf-8")
    assert relative_links(page) == ["#title-here", "missing.md"]
    assert anchors(page) == {"title-here"}


def test_the_readme_layout_lists_every_top_folder() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("```")[1]
    listed = {line.split()[0].rstrip("/") for line in layout.splitlines() if line.strip()}
    folders = {p.relative_to(ROOT).parts[0] for p in tracked("*") if len(p.relative_to(ROOT).parts) > 1}
    assert folders - listed == set()
