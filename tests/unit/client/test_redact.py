"""The redaction filter: registered secrets and token-shaped values vanish from log records."""

from __future__ import annotations

import logging

import pytest

from fleetwave.platforms.iodm.redact import REDACTED, install_redaction, redact, register_secret


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer abcdef123456",
        "headers=[(b'Authorization', b'Bearer abcdef123456')]",
        '{"accessToken": "abcdef123456", "expiresIn": 3600}',
        "appId=app&secret=abcdef123456",
        "refreshToken=abcdef123456&x=1",
    ],
)
def test_token_shapes_are_redacted(text: str) -> None:
    assert "abcdef123456" not in redact(text)
    assert REDACTED in redact(text)


def test_registered_values_are_redacted_anywhere() -> None:
    register_secret("plain-value-9f8e7d")
    assert redact("x plain-value-9f8e7d y") == f"x {REDACTED} y"


def test_filter_rewrites_httpcore_records(caplog: pytest.LogCaptureFixture) -> None:
    install_redaction()
    register_secret("tok-7c6b5a4d3e2f")
    with caplog.at_level(logging.DEBUG, logger="httpcore.http11"):
        logging.getLogger("httpcore.http11").debug("send headers %s", "tok-7c6b5a4d3e2f")
    assert "tok-7c6b5a4d3e2f" not in caplog.text
    assert REDACTED in caplog.text
