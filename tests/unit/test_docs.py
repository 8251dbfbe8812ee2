"""docs/FAULTS.md and docs/CERT-PROFILE.md stay true to the code and the tests.

Fault ids (F01...) are cited in test names, parametrize ids and comments; profile ids (3A...) in
fabfile/certs.py and the certificate tests. Each cited id needs its section in the doc; each fault
section names tests that exist and carry its id; each test named after a fault is listed in its
section. Files are read as text: nothing is imported or run.
"""

from __future__ import annotations

import re
from pathlib import Path

from _support import REPO

FAULTS = REPO / "docs" / "FAULTS.md"
PROFILE = REPO / "docs" / "CERT-PROFILE.md"
NOT_TESTED = "Not tested, because"

FAULT_ID = re.compile(r"(?<![0-9A-Za-z])F[0-9]{2}(?![0-9A-Za-z])")
TEST_DEF = re.compile(r"^\s*(?:async\s+)?def\s+(test_\w+)\s*\(", re.MULTILINE)
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")
FAULT_HEADING = r"(F[0-9]{2})"
PROFILE_HEADING = r"Profile ([0-9][A-Z])"
PROFILE_CITE = re.compile(r"(?:profile\s+|\()([0-9][A-Z])\b")


def sources() -> list[Path]:
    """Where ids are cited: the code, the tests, the tasks and the README (not the docs themselves)."""
    files = [*sorted((REPO / "fabfile").rglob("*.py")), *sorted((REPO / "tests").rglob("*.py")),
             REPO / "tasks.py", REPO / "README.md"]
    return [f for f in files if f.name != "test_docs.py"]


def sections(text: str, heading: str) -> dict[str, str]:
    """``## <heading>`` (a regex with one group, the id) -> the text up to the next ``## ``."""
    parts = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    found = {}
    for part in parts:
        title, _, body = part.partition("\n")
        match = re.fullmatch(heading + r"(?:\W.*)?", title.strip())
        if match:
            found[match.group(1)] = body
    return found


def fault_sections() -> dict[str, str]:
    return sections(FAULTS.read_text(), FAULT_HEADING)


def collected_tests() -> dict[str, Path]:
    names = {}
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        for name in TEST_DEF.findall(path.read_text()):
            names[name] = path
    return names


def ids_of(name: str) -> set[str]:
    return set(re.findall(r"(?<=_)F[0-9]{2}(?=_)", name + "_"))


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


# --------------------------------------------------------------------------- faults


def test_every_cited_fault_id_has_a_section():
    documented = set(fault_sections())
    missing = {}
    for path in sources():
        for fid in set(FAULT_ID.findall(path.read_text())) - documented:
            missing.setdefault(fid, []).append(rel(path))
    assert not missing, f"fault ids cited but without a '## Fxx' section in docs/FAULTS.md: {missing}"


def test_every_fault_section_is_tested_or_says_why_not():
    names = collected_tests()
    untested = [fid for fid, body in fault_sections().items()
                if NOT_TESTED not in body
                and not any(fid in ids_of(name) for _, name in TEST_REF.findall(body) if name in names)]
    assert not untested, f"docs/FAULTS.md sections with no test carrying their id (or '{NOT_TESTED} ...'): {untested}"


def test_every_test_named_in_the_faults_doc_exists_and_carries_the_id():
    names = collected_tests()
    wrong = []
    for fid, body in fault_sections().items():
        for file, name in TEST_REF.findall(body):
            if names.get(name) != REPO / file:
                wrong.append(f"{fid}: {file}::{name} does not exist" + (
                    f" (it is in {rel(names[name])})" if name in names else ""))
            elif fid not in ids_of(name):
                wrong.append(f"{fid}: {name} does not carry {fid} in its name")
    assert not wrong, "\n".join(wrong)


def test_every_test_named_after_a_fault_is_listed_under_it():
    listed = {fid: {name for _, name in TEST_REF.findall(body)} for fid, body in fault_sections().items()}
    unlisted = [f"add `{rel(path)}::{name}` under '## {fid}'"
                for name, path in collected_tests().items() for fid in sorted(ids_of(name))
                if name not in listed.get(fid, set())]
    assert not unlisted, "docs/FAULTS.md misses tests:\n" + "\n".join(unlisted)


# --------------------------------------------------------------------------- certificate profiles


def profile_citations() -> dict[str, set[str]]:
    cited: dict[str, set[str]] = {}
    for path in sources():
        for pid in PROFILE_CITE.findall(path.read_text()):
            cited.setdefault(pid, set()).add(rel(path))
    return cited


def test_every_cited_profile_id_has_a_section():
    documented = set(sections(PROFILE.read_text(), PROFILE_HEADING))
    cited = profile_citations()
    assert cited, "no 'profile 3A'-style citation found: the pattern or the code changed"
    assert set(cited) <= documented, {p: sorted(f) for p, f in cited.items() if p not in documented}


def test_every_documented_profile_is_cited_by_the_code_and_a_test():
    cited = profile_citations()
    for pid in sections(PROFILE.read_text(), PROFILE_HEADING):
        files = cited.get(pid, set())
        assert any(f.startswith("fabfile/") for f in files), f"profile {pid} is documented; no fabfile/ code cites it"
        assert any(f.startswith("tests/") for f in files), f"profile {pid} is documented; no test cites it"


def test_the_helpers_parse_what_they_claim():
    """The checks above must be able to fail: run their parsers on a small sample."""
    sample = "intro\n## F10\nbody `tests/unit/x.py::test_F10_a`\n## F11 more\nNot tested, because y\n## Rules\n"
    assert set(sections(sample, FAULT_HEADING)) == {"F10", "F11"}
    assert set(sections("## Profile 3A: self-signed\nx\n## Profile 3B\n## Files\n", PROFILE_HEADING)) == {"3A", "3B"}
    assert TEST_REF.findall(sample) == [("tests/unit/x.py", "test_F10_a")]
    assert ids_of("test_F01_F02_bad") == {"F01", "F02"} and ids_of("test_F010_x") == set()
    assert FAULT_ID.findall("F10 xF11 F12a (F13) 0F14 F15-x") == ["F10", "F13", "F15"]
    assert PROFILE_CITE.findall("the design, profile 3A) and CA mode (3B)") == ["3A", "3B"]
