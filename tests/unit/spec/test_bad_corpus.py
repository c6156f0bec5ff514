"""The corpus of malformed campaign files: each names its expected errors in a header.

Every file in tests/fixtures/bad_campaigns starts with ``# expect: LINE:COL: text`` lines;
validation must report an error at that position whose message contains the text, and
must not accept the file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetwave.spec import check_file
from tests.fixtures import CORPORA, expected_errors

CORPUS = CORPORA / "bad_campaigns"
FILES = sorted(CORPUS.glob("*.yaml"))


def test_corpus_is_big_enough() -> None:
    assert len(FILES) >= 25


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_bad_campaign_reports_expected_errors(path: Path) -> None:
    expected = expected_errors(path)
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
