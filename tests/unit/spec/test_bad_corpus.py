"""The corpus of malformed campaign files: each names its expected errors in a header.

Every file in tests/fixtures/bad_campaigns starts with ``# expect: LINE:COL: text`` lines;
validation must report an error at that position whose message contains the text, and
must not accept the file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetwave.spec import check_file

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "bad_campaigns"
FILES = sorted(CORPUS.glob("*.yaml"))


def _expected(path: Path) -> list[tuple[int, int, str]]:
    out = []
    for line in path.read_text().splitlines():
        if not line.startswith("# expect: "):
            break
        pos, text = line.removeprefix("# expect: ").split(": ", 1)
        ln, col = pos.split(":")
        out.append((int(ln), int(col), text))
    return out


def test_corpus_is_big_enough() -> None:
    assert len(FILES) >= 25


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_bad_campaign_reports_expected_errors(path: Path) -> None:
    expected = _expected(path)
    assert expected, f"{path.name} has no '# expect:' header"
    spec, problems = check_file(path)
    assert spec is None
    rendered = [str(p) for p in problems]
    for line, col, text in expected:
        hits = [p for p in problems if (p.line, p.col) == (line, col) and text in p.message]
        assert hits, f"{path.name}: no error '{line}:{col}: {text}' in {rendered}"
    for p in problems:
        assert str(p).startswith(f"{path}:"), p
        assert "\n" not in str(p)
        assert "Traceback" not in p.message
