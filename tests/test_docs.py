"""The project's design documents live in docs/ and every pointer to them resolves."""

import pathlib
import re
import subprocess

import pytest

ROOT = pathlib.Path(__file__).parents[1]
ALGORITHMS = ROOT / "docs" / "algorithms.md"
# Upper-case design file names are not part of the repository: nothing may point to them.
OUTSIDE = re.compile(r"ALGORITHMS\.md|ARCHITECTURE\.md")
SECTION = r"\d+(?:\.\d+)?"
# "docs/algorithms.md §1.2", "§1.2–1.4", possibly broken across a line.
CITATION = re.compile(rf"docs/algorithms\.md\s*§({SECTION})(?:\s*[–-]\s*({SECTION}))?")
HEADING = re.compile(rf"^#{{2,4}}\s+({SECTION})\.?\s", re.MULTILINE)


def _tracked(*paths: str) -> list[pathlib.Path]:
    """Tracked (or new, not ignored) files under `paths`, from the repository root."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *paths],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in out.splitlines() if (ROOT / name).is_file()]


def _text(path: pathlib.Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None  # binary results (images, arrays)


def test_no_file_points_outside_the_repository():
    me = pathlib.Path(__file__).resolve()
    files = _tracked("jaxdd", "tests", "benchmarks", "experiments", "scripts", "docs", "README.md")
    assert files
    offenders = []
    for path in files:
        text = _text(path) if path.resolve() != me else None
        for number, line in enumerate((text or "").splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "point to docs/algorithms.md or docs/architecture.md:\n" + "\n".join(
        offenders
    )


def test_design_documents_exist():
    for name in ("algorithms.md", "architecture.md", "deviations.md", "defaults.md"):
        assert (ROOT / "docs" / name).is_file(), name


def test_every_tad_and_datm_default_has_a_provenance_row():
    import dataclasses

    from jaxdd.trust.dual import TADConfig

    table = (ROOT / "docs" / "defaults.md").read_text(encoding="utf-8")
    tad = table[table.index("## TAD") :]
    missing = [f.name for f in dataclasses.fields(TADConfig) if f"`{f.name}`" not in tad]
    assert not missing, f"TAD defaults without a provenance row in docs/defaults.md: {missing}"


def test_every_cited_algorithms_section_is_a_heading():
    headings = set(HEADING.findall(ALGORITHMS.read_text(encoding="utf-8")))
    assert {"0.1", "1.2", "1.6", "4", "4.4"} <= headings
    cited: dict[str, set[str]] = {}
    for path in _tracked("jaxdd"):
        for match in CITATION.finditer(_text(path) or ""):
            for section in filter(None, match.groups()):
                cited.setdefault(section, set()).add(str(path.relative_to(ROOT)))
    assert cited, "jaxdd/ cites no section of docs/algorithms.md"
    missing = {s: sorted(files) for s, files in cited.items() if s not in headings}
    assert not missing, f"cited in jaxdd/ but not a heading of docs/algorithms.md: {missing}"


def test_citation_pattern_reads_ranges_and_broken_lines():
    text = "see (docs/algorithms.md\n    §1.2–1.4) and docs/algorithms.md §4"
    assert [m.groups() for m in CITATION.finditer(text)] == [("1.2", "1.4"), ("4", None)]
