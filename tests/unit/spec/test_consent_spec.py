"""The campaign's ``consent:`` section: defaults, the timeout action, app delivery, and
campaigns without it keep their stored fingerprint."""

from __future__ import annotations

import datetime as dt

import pytest

from fleetwave.spec import SpecError, load_spec_text
from fleetwave.spec.loader import spec_snapshot
from fleetwave.spec.model import ConsentDelivery, ConsentTimeoutAction, spec_fingerprint

BASE = """\
name: consent-ok
kind: firmware
package:
  version: "2.0.0"
targets:
  devices: [dev-1, dev-2]
waves:
  - percent: 100
"""


def test_defaults_and_timeout_action() -> None:
    spec = load_spec_text(BASE + "consent: {}\n")
    assert spec.consent is not None
    c = spec.consent
    assert (c.required, c.period, c.answer_timeout) == (
        True,
        dt.timedelta(days=14),
        dt.timedelta(days=7),
    )
    assert c.timeout_action is ConsentTimeoutAction.SKIP
    assert (c.declines_count, c.max_declined_percent, c.delivery) == (
        False,
        None,
        ConsentDelivery.PLATFORM,
    )
    opt_out = load_spec_text(BASE + "consent: {required: false}\n").consent
    assert opt_out is not None and opt_out.timeout_action is ConsentTimeoutAction.PROCEED


def test_app_delivery_with_package() -> None:
    spec = load_spec_text(
        BASE
        + "consent:\n  delivery: app\n  answer_timeout: 2d\n  on_timeout: fail\n"
        + "  max_declined_percent: 30\n"
        + "  package_url: https://files.example/fw.bin\n  package_sha256: "
        + "ab" * 32
        + "\n"
    )
    assert spec.consent is not None
    assert spec.consent.delivery is ConsentDelivery.APP
    assert spec.consent.timeout_action is ConsentTimeoutAction.FAIL
    assert spec.consent.max_declined_percent == 30


def test_platform_delivery_refuses_package_fields_and_double_limits() -> None:
    with pytest.raises(SpecError) as err:
        load_spec_text(
            BASE + "consent:\n  package_url: https://x/y\n"
            "  declines_count: true\n  max_declined_percent: 5\n",
            file="c.yaml",
        )
    text = str(err.value)
    assert "c.yaml:10:16: consent.package_url: package_url is for delivery: app only" in text
    assert "(and 1 more" in text  # max_declined_percent with declines_count


def test_a_spec_without_consent_keeps_its_fingerprint() -> None:
    snapshot = spec_snapshot(load_spec_text(BASE))
    assert "consent" not in snapshot
    with_consent = spec_snapshot(load_spec_text(BASE + "consent: {}\n"))
    assert with_consent["consent"]["answer_timeout"] == "7d"
    assert spec_fingerprint(snapshot) != spec_fingerprint(with_consent)
