"""Every call the fleetwave ThingSpace driver makes, and its error paths, made by Verizon's SDK
against the simulator: the simulator's wire format is the one the SDK sends and parses."""

from __future__ import annotations

import base64
from datetime import date, timedelta
from typing import Any

import pytest
from verizon.exceptions.api_exception import APIException
from verizon.exceptions.connectivity_management_result_exception import (
    ConnectivityManagementResultException,
)
from verizon.exceptions.fota_v1_result_exception import FotaV1ResultException
from verizon.exceptions.fota_v2_result_exception import FotaV2ResultException
from verizon.exceptions.oauth_provider_exception import OauthProviderException
from verizon.models.campaign_software_upgrade import CampaignSoftwareUpgrade
from verizon.models.download_time_window import DownloadTimeWindow
from verizon.models.firmware_upgrade_change_request import FirmwareUpgradeChangeRequest
from verizon.models.firmware_upgrade_request import FirmwareUpgradeRequest
from verizon.models.fota_v1_callback_registration_request import (
    FotaV1CallbackRegistrationRequest,
)
from verizon.models.fota_v2_callback_registration_request import (
    FotaV2CallbackRegistrationRequest,
)
from verizon.models.log_in_request import LogInRequest
from verizon.models.oauth_token import OauthToken
from verizon.models.upload_and_schedule_file_request import UploadAndScheduleFileRequest
from verizon.models.v1_licenses_assigned_removed_request import V1LicensesAssignedRemovedRequest
from verizon.models.v2_add_or_remove_device_request import V2AddOrRemoveDeviceRequest
from verizon.models.v2_change_campaign_dates_request import V2ChangeCampaignDatesRequest
from verizon.models.v2_time_window import V2TimeWindow
from verizon.verizon_client import VerizonClient

from fleetwave.sim.testing import TSHandle

pytestmark = pytest.mark.timeout(120)

SW_METERS = "SW_Aquaflow_WM-200_2.0.1To2.1.0"
FW_SENSORS = "FOTA_Sensorix_NBS-10_3.1.0To3.2.0"


def today(ts: TSHandle) -> date:
    """The simulator's date as a plain ``datetime.date`` (the SDK serialises only those)."""
    now = ts.clock()
    return date(now.year, now.month, now.day)


def on_version(ts: TSHandle, model: str, kind: str, version: str, n: int) -> list[str]:
    """``n`` IMEIs of ``model`` whose ``kind`` ("firmware"/"software") is ``version`` and that
    are in no request yet."""
    busy = set(ts.stats()["device_request_counts"])
    out = []
    for imei in ts.imeis(model):
        if imei in busy:
            continue
        dev = ts.device(imei)
        versions = {s["name"].rsplit("-", 1)[-1]: s["version"] for s in dev["softwareList"]}
        if dev["fotaEligible"] and versions[kind] == version:
            out.append(imei)
        if len(out) == n:
            return out
    raise AssertionError(f"not {n} free {model} devices on {kind} {version}")


# auth -----------------------------------------------------------------------------------


def test_token_endpoint_issues_a_one_hour_bearer_token(ts: TSHandle, client_factory: Any) -> None:
    client = client_factory()
    basic = base64.b64encode(f"{ts.client_key}:{ts.client_secret}".encode()).decode()
    token = client.oauth_authorization.request_token_thingspace_oauth(f"Basic {basic}").body
    assert isinstance(token, OauthToken)
    assert token.token_type == "Bearer" and token.expires_in == 3600 and token.access_token


def test_wrong_client_secret_is_an_oauth_error(ts: TSHandle, client_factory: Any) -> None:
    basic = base64.b64encode(f"{ts.client_key}:wrong".encode()).decode()
    with pytest.raises(OauthProviderException) as err:
        client_factory().oauth_authorization.request_token_thingspace_oauth(f"Basic {basic}")
    assert err.value.response_code == 401 and err.value.error == "invalid_client"


def test_login_returns_a_session_token(ts: TSHandle, client_factory: Any) -> None:
    ts.unlock()
    result = client_factory().session_management.start_connectivity_management_session(
        LogInRequest(username=ts.username, password=ts.password)
    )
    assert isinstance(result.body.session_token, str) and len(result.body.session_token) >= 16


def test_bad_bearer_token_is_the_gateway_401(ts: TSHandle, client_factory: Any) -> None:
    bogus = OauthToken(access_token="not-a-token", token_type="Bearer", expires_in=3600)
    bogus.expiry = 2**40  # the SDK will not fetch another
    client = client_factory(session="whatever", oauth_token=bogus)
    with pytest.raises(APIException) as err:
        client.firmware_v1.list_available_firmware(ts.account)
    assert err.value.response_code == 401
    assert '"900901"' in err.value.response.text


def test_expired_session_is_400(ts: TSHandle, sdk: VerizonClient) -> None:
    sdk.firmware_v1.list_available_firmware(ts.account)
    ts.advance(20 * 60)  # 20 minutes unused
    with pytest.raises(FotaV1ResultException) as err:
        sdk.firmware_v1.list_available_firmware(ts.account)
    assert err.value.error_code == "UnifiedWebService.SECURITY.SessionToken.Expired"


def test_five_failed_logins_lock_the_user(ts: TSHandle, client_factory: Any) -> None:
    ts.unlock()
    sessions = client_factory().session_management
    codes = []
    for _ in range(5):
        with pytest.raises(ConnectivityManagementResultException) as err:
            sessions.start_connectivity_management_session(
                LogInRequest(username=ts.username, password="wrong")
            )
        codes.append(err.value.error_code)
    assert codes == ["UnifiedWebService.SECURITY.InvalidCredentials"] * 5
    with pytest.raises(ConnectivityManagementResultException) as err:
        sessions.start_connectivity_management_session(
            LogInRequest(username=ts.username, password=ts.password)
        )
    assert err.value.error_code == "UnifiedWebService.SECURITY.UserLocked"
    assert ts.stats(requests=False)["locked"] is True
    ts.unlock()


# FOTA v1 --------------------------------------------------------------------------------


def test_v1_firmware_list(ts: TSHandle, sdk: VerizonClient) -> None:
    firmware = sdk.firmware_v1.list_available_firmware(ts.account).body
    by_name = {f.firmware_name: f for f in firmware}
    assert by_name[FW_SENSORS].from_version == "3.1.0"
    assert by_name[FW_SENSORS].to_version == "3.2.0"
    assert by_name[FW_SENSORS].make == "Sensorix" and by_name[FW_SENSORS].model == "NBS-10"


def test_v1_upgrade_create_get_modify_report_history_cancel(
    ts: TSHandle, sdk: VerizonClient
) -> None:
    imeis = on_version(ts, "NBS-10", "firmware", "3.1.0", 4)
    day = today(ts) + timedelta(days=2)
    created = sdk.firmware_v1.schedule_firmware_upgrade(
        FirmwareUpgradeRequest(
            account_name=ts.account,
            firmware_name=FW_SENSORS,
            firmware_to="3.2.0",
            start_date=day,
            end_date=day + timedelta(days=1),
            device_list=imeis[:3],
        )
    ).body
    assert created.status == "RequestPending"
    assert [d.device_id for d in created.device_list] == imeis[:3]
    assert {d.status for d in created.device_list} == {"RequestPending"}

    changed = sdk.firmware_v1.update_firmware_upgrade_devices(
        ts.account, created.id, FirmwareUpgradeChangeRequest(mtype="append", device_list=imeis[3:])
    ).body
    assert changed.id == created.id and changed.device_list[0].device_id == imeis[3]
    sdk.firmware_v1.update_firmware_upgrade_devices(
        ts.account, created.id, FirmwareUpgradeChangeRequest(mtype="remove", device_list=imeis[:1])
    )
    ts.advance(180)
    got = sdk.firmware_v1.list_firmware_upgrade_details(ts.account, created.id).body
    assert got.status == "Queued" and [d.device_id for d in got.device_list] == imeis[1:]

    report = sdk.software_management_reports_v1.list_upgrades_for_specified_status(
        ts.account, "Queued", 0
    ).body
    assert created.id in [u.id for u in report.report_list] and report.has_more_flag is False

    history = sdk.software_management_reports_v1.get_device_firmware_upgrade_history(
        ts.account, imeis[1]
    ).body
    assert [(h.id, h.firmware_to, h.status) for h in history] == [(created.id, "3.2.0", "Queued")]

    assert sdk.firmware_v1.cancel_scheduled_firmware_upgrade(ts.account, created.id).body.success
    with pytest.raises(FotaV1ResultException) as err:
        sdk.firmware_v1.list_firmware_upgrade_details(ts.account, created.id)
    assert err.value.error_code == "SoftwareManagementService.INPUT_INVALID.UpgradeId"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"start_date": date(2020, 1, 1)}, "INPUT_INVALID.StartDate"),
        ({"firmware_name": "FOTA_nothing"}, "INPUT_INVALID.FirmwareName"),
        ({"device_list": ["123"]}, "INPUT_INVALID.DeviceId"),
        ({"firmware_to": "9.9.9"}, "INPUT_INVALID.FirmwareTo"),
    ],
)
def test_v1_validation_errors_are_400(
    ts: TSHandle, sdk: VerizonClient, change: dict[str, Any], code: str
) -> None:
    body: dict[str, Any] = {
        "account_name": ts.account,
        "firmware_name": FW_SENSORS,
        "firmware_to": "3.2.0",
        "start_date": today(ts),
        "end_date": today(ts) + timedelta(days=1),
        "device_list": ts.imeis("NBS-10")[:1],
        **change,
    }
    with pytest.raises(FotaV1ResultException) as err:
        sdk.firmware_v1.schedule_firmware_upgrade(FirmwareUpgradeRequest(**body))
    assert err.value.response_code == 400
    assert err.value.error_code == f"SoftwareManagementService.{code}"
    assert err.value.error_message


def test_v1_devices_of_another_model_are_refused(ts: TSHandle, sdk: VerizonClient) -> None:
    with pytest.raises(FotaV1ResultException) as err:
        sdk.firmware_v1.schedule_firmware_upgrade(
            FirmwareUpgradeRequest(
                account_name=ts.account,
                firmware_name=FW_SENSORS,
                firmware_to="3.2.0",
                start_date=today(ts),
                end_date=today(ts) + timedelta(days=1),
                device_list=[ts.imeis("NBS-10")[0], ts.imeis("WM-200")[0]],
            )
        )
    assert err.value.error_code == "SoftwareManagementService.REQUEST_FAILED.DeviceMismatch"
    assert ts.imeis("WM-200")[0] in err.value.error_message


@pytest.mark.filterwarnings("ignore:assign_licenses_to_devices is deprecated")
@pytest.mark.filterwarnings("ignore:remove_licenses_from_devices is deprecated")
def test_v1_account_devices_and_licenses(ts: TSHandle, sdk: VerizonClient) -> None:
    page = sdk.software_management_reports_v1.list_account_devices(ts.account, 0).body
    assert page.account_name == ts.account and page.has_more_data is False
    assert len(page.device_list) == 300
    first = page.device_list[0]
    assert first.device_id == ts.imeis()[0] and first.fota_eligible in (True, False)
    result = sdk.software_management_licenses_v1.assign_licenses_to_devices(
        ts.account, V1LicensesAssignedRemovedRequest(device_list=[first.device_id])
    ).body
    assert result.lic_used_count == 1 and result.device_list[0].status == "Success"
    sdk.software_management_licenses_v1.remove_licenses_from_devices(
        ts.account, V1LicensesAssignedRemovedRequest(device_list=[first.device_id])
    )


def test_v1_callbacks_register_list_deregister(ts: TSHandle, sdk: VerizonClient) -> None:
    callbacks = sdk.software_management_callbacks_v1
    reg = callbacks.register_callback(
        ts.account,
        FotaV1CallbackRegistrationRequest(name="Fota", url="https://receiver.example/fota"),
    ).body
    assert reg.account_name == ts.account and reg.service_name == "Fota"
    listed = callbacks.list_registered_callbacks(ts.account).body
    assert [(c.name, c.url) for c in listed] == [("Fota", "https://receiver.example/fota")]
    assert callbacks.deregister_callback(ts.account, "Fota").body.success is True
    with pytest.raises(FotaV1ResultException) as err:
        callbacks.register_callback(
            ts.account, FotaV1CallbackRegistrationRequest(name="Fota", url="http://plain/fota")
        )
    assert err.value.error_code == "SoftwareManagementService.INPUT_INVALID.CallbackUrl"


# FOTA v2 --------------------------------------------------------------------------------


def test_v2_software_list(ts: TSHandle, sdk: VerizonClient) -> None:
    software = sdk.software_management_reports_v2.list_available_software(ts.account).body
    meters = next(s for s in software if s.software_name == SW_METERS)
    assert (meters.make, meters.model, meters.distribution_type) == ("Aquaflow", "WM-200", "HTTP")


def test_v2_campaign_create_get_modify_dates_status_cancel(
    ts: TSHandle, sdk: VerizonClient
) -> None:
    imeis = on_version(ts, "WM-200", "software", "2.0.1", 3)
    start = today(ts) + timedelta(days=1)
    body = CampaignSoftwareUpgrade(
        campaign_name="conformance-v2",
        software_name=SW_METERS,
        software_from="2.0.1",
        software_to="2.1.0",
        distribution_type="HTTP",
        start_date=start,
        end_date=start + timedelta(days=2),
        download_time_window_list=[V2TimeWindow(start_time=1, end_time=5)],
        install_time_window_list=[V2TimeWindow(start_time=2, end_time=4)],
        device_list=imeis[:2],
    )
    campaign = sdk.campaigns_v2.schedule_campaign_firmware_upgrade(ts.account, body).body
    assert campaign.status == "CampaignRequestPending"
    assert campaign.start_date == start and campaign.make == "Aquaflow"
    assert [(w.start_time, w.end_time) for w in campaign.download_time_window_list] == [(1, 5)]

    added = sdk.campaigns_v2.update_campaign_firmware_devices(
        ts.account, campaign.id, V2AddOrRemoveDeviceRequest(mtype="append", device_list=imeis[2:])
    ).body
    assert added.campaign_id == campaign.id and added.request_id

    moved = sdk.campaigns_v2.update_campaign_dates(
        ts.account,
        campaign.id,
        V2ChangeCampaignDatesRequest(
            start_date=start,
            end_date=start + timedelta(days=3),
            download_time_window_list=[V2TimeWindow(1, 5), V2TimeWindow(22, 24)],
            install_time_window_list=[V2TimeWindow(2, 4)],
        ),
    ).body
    assert moved.end_date == start + timedelta(days=3)
    assert len(moved.download_time_window_list) == 2

    ts.advance(180)
    got = sdk.campaigns_v2.get_campaign_information(ts.account, campaign.id).body
    assert got.status == "CampaignRequestQueued"
    devices = sdk.software_management_reports_v2.get_campaign_device_status(
        ts.account, campaign.id
    ).body
    assert devices.total_device == 3 and devices.has_more_data is False
    assert devices.max_page_size == 1000
    assert {d.device_id: d.status for d in devices.device_list} == dict.fromkeys(imeis, "Accepted")
    history = sdk.software_management_reports_v2.get_campaign_history_by_status(
        ts.account, "CampaignRequestQueued"
    ).body
    assert campaign.id in [c.id for c in history.campaign_list]
    device_history = sdk.software_management_reports_v2.get_device_firmware_upgrade_history(
        ts.account, imeis[0]
    ).body
    assert [(h.id, h.status) for h in device_history] == [(campaign.id, "Accepted")]

    assert sdk.campaigns_v2.cancel_campaign(ts.account, campaign.id).body.success is True
    got = sdk.campaigns_v2.get_campaign_information(ts.account, campaign.id).body
    assert got.status == "CampaignCancelled"


def test_v2_file_campaign(ts: TSHandle, sdk: VerizonClient) -> None:
    imeis = ts.imeis("TRK-9")[:2]
    start = today(ts)
    response = sdk.campaigns_v2.schedule_file_upgrade(
        ts.account,
        UploadAndScheduleFileRequest(
            campaign_name="conformance-file",
            file_name="TRK-9-config",
            file_version="2.0",
            distribution_type="HTTP",
            start_date=start.isoformat(),
            end_date=(start + timedelta(days=1)).isoformat(),
            download_time_window_list=[DownloadTimeWindow(start_time=0, end_time=24)],
            device_list=imeis,
        ),
    ).body
    assert response.file_name == "TRK-9-config" and response.file_version == "2.0"
    assert response.status == "CampaignRequestPending" and response.device_list == imeis
    sdk.campaigns_v2.cancel_campaign(ts.account, response.id)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"software_from": "0.0.1"}, "INPUT_INVALID.SoftwareFrom"),
        ({"distribution_type": "FTP"}, "INPUT_INVALID.DistributionType"),
        ({"download_time_window_list": [V2TimeWindow(5, 2)]}, "INPUT_INVALID.TimeWindow"),
        ({"install_time_window_list": [V2TimeWindow(0, 25)]}, "INPUT_INVALID.TimeWindow"),
        ({"end_date": date(2020, 1, 1)}, "INPUT_INVALID.EndDate"),
    ],
)
def test_v2_validation_errors_are_400(
    ts: TSHandle, sdk: VerizonClient, change: dict[str, Any], code: str
) -> None:
    body: dict[str, Any] = {
        "software_name": SW_METERS,
        "software_from": "2.0.1",
        "software_to": "2.1.0",
        "distribution_type": "HTTP",
        "start_date": today(ts),
        "end_date": today(ts) + timedelta(days=1),
        "device_list": ts.imeis("WM-200")[:1],
        **change,
    }
    with pytest.raises(FotaV2ResultException) as err:
        sdk.campaigns_v2.schedule_campaign_firmware_upgrade(
            ts.account, CampaignSoftwareUpgrade(**body)
        )
    assert err.value.response_code == 400
    assert err.value.error_code == f"SoftwareManagementService.{code}"


def test_v2_callbacks_register_get_update_deregister(ts: TSHandle, sdk: VerizonClient) -> None:
    callbacks = sdk.software_management_callbacks_v2
    first = callbacks.register_callback(
        ts.account, FotaV2CallbackRegistrationRequest(url="https://receiver.example/v2")
    ).body
    assert first.url == "https://receiver.example/v2"
    callbacks.update_callback(
        ts.account, FotaV2CallbackRegistrationRequest(url="https://receiver.example/v2b")
    )
    assert callbacks.list_registered_callbacks(ts.account).body.url == (
        "https://receiver.example/v2b"
    )
    assert callbacks.deregister_callback(ts.account).body.success is True
    with pytest.raises(FotaV2ResultException) as err:
        callbacks.list_registered_callbacks(ts.account)
    assert err.value.error_code == "SoftwareManagementService.REQUEST_FAILED.CallbackNotRegistered"


def test_v2_account_devices(ts: TSHandle, sdk: VerizonClient) -> None:
    page = sdk.software_management_reports_v2.list_account_devices(ts.account).body
    assert page.has_more_data is False and page.max_page_size == 1000
    assert len(page.device_list) == 300
    meter = next(d for d in page.device_list if d.model == "WM-200")
    assert meter.distribution_type == "HTTP" and meter.software_list


def test_v2_file_list(ts: TSHandle, sdk: VerizonClient) -> None:
    files = sdk.configuration_files.get_list_of_files(ts.account, "HTTP").body
    files = files.available_files_response
    tracker = [f for f in files if f.file_name == "TRK-9-config"]
    assert sorted(f.file_version for f in tracker) == ["1.0", "2.0"]
    assert {(f.make, f.model, f.distribution_type) for f in tracker} == {
        ("Roamly", "TRK-9", "HTTP")
    }
