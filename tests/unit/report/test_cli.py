"""``fleetwave report`` against a migrated SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fleetwave import store
from fleetwave.cli.report import register
from fleetwave.errors import UserError
from tests.unit.report.test_report import _fill


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'fw.db'}"
    engine = store.get_engine(url)
    try:
        store.upgrade_schema(engine)
        with store.session_scope(engine) as session:
            _fill(session)
    finally:
        engine.dispose()
    return url


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command()
    def _other() -> None:  # a second command, so "report" is a subcommand as in fleetwave
        """Unused."""

    return app


def test_report_markdown_and_png(db_url: str, tmp_path: Path) -> None:
    png = tmp_path / "flaky.png"
    result = CliRunner().invoke(_app(), ["report", "flaky", "--db", db_url, "--png", str(png)])
    assert result.exit_code == 0, result.output
    assert "# Campaign `flaky`: rolled_back" in result.output
    assert "threshold_breach" in result.output
    assert "- threshold tripped: failure rate 50% above 20%" in result.output
    assert f"chart: {png}" in result.output
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_report_json(db_url: str) -> None:
    result = CliRunner().invoke(_app(), ["report", "flaky", "--db", db_url, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["status"] == "rolled_back"
    assert data["totals"]["devices"] == 10


def test_report_unknown_campaign_is_a_user_error(db_url: str) -> None:
    result = CliRunner().invoke(_app(), ["report", "nope", "--db", db_url])
    assert isinstance(result.exception, UserError)
    assert "no campaign named 'nope'" in str(result.exception)


def test_report_refuses_an_unmigrated_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["report", "x", "--db", f"sqlite:///{tmp_path / 'new.db'}"])
    assert isinstance(result.exception, UserError)
    assert "fleetwave db upgrade" in str(result.exception)


def test_report_is_markdown_when_piped_and_rendered_with_rich(db_url: str) -> None:
    piped = CliRunner().invoke(_app(), ["report", "flaky", "--db", db_url])
    assert piped.exit_code == 0, piped.output
    assert piped.output.startswith("# Campaign `flaky`: rolled_back")  # not a terminal: text
    assert "| 1 | canary |" in piped.output  # waves numbered from 1, as `plan` shows them
    assert "## Last events (oldest first)" in piped.output
    assert "threshold_breach** wave 1 " in piped.output  # the stored subject "wave 0"
    md = CliRunner().invoke(_app(), ["report", "flaky", "--db", db_url, "--format", "md"])
    assert md.output == piped.output

    rendered = CliRunner().invoke(
        _app(), ["report", "flaky", "--db", db_url, "--format", "rich"], terminal_width=80
    )
    assert rendered.exit_code == 0, rendered.output
    out = rendered.output
    assert "Campaign flaky: rolled_back" in out and "# Campaign" not in out and "| " not in out
    assert "canary (rollback)" in out and "cancelled" in out  # the names are never cut
    assert max(len(line) for line in out.splitlines()) <= 80


def test_report_refuses_an_unknown_format(db_url: str) -> None:
    result = CliRunner().invoke(_app(), ["report", "flaky", "--db", db_url, "--format", "html"])
    assert isinstance(result.exception, UserError)
    assert "--format 'html'" in str(result.exception)
