"""The campaign flow: ``run_campaign(campaign)`` advances one campaign and ends.

Thin glue: the engine (``fleetwave.engine.runner.advance``) does the work; this module
turns its stages into Prefect task runs (one per fixed stage, running wave and submission
batch; a wave's monitoring rounds run inside its task run: never one per device or round;
see docs/performance.md, "Prefect task runs"), its progress events into a progress
artifact, its approval gates into ``pause_flow_run(wait_for_input=ApprovalInput)``, and its
outcome into the summary and per-wave artifacts. A consent campaign's run serves the
end-user consent API while it lasts (:mod:`fleetwave.consent.serve`).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Literal, TypeVar
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext
from prefect.flow_runs import FlowPauseTimeout, apause_flow_run
from prefect.settings import get_current_settings
from pydantic import ValidationError

from fleetwave import store
from fleetwave.consent.serve import serve_consent_api
from fleetwave.engine.context import ApprovalReply, ApprovalRequest, Approver
from fleetwave.engine.lease import LeaseHeldError
from fleetwave.engine.progress import ProgressSink, combine_sinks
from fleetwave.engine.runner import advance
from fleetwave.errors import UserError
from fleetwave.sim.linked_clock import clock_from_option
from fleetwave.spec import load_spec
from flows.approval import ApprovalInput, describe_approval, describe_decision, input_problem
from flows.artifacts import ProgressArtifact, publish_report
from flows.runlog import RunLog
from flows.schedules import describe_windows
from flows.states import campaign_result, error_state, outcome_state

__all__ = [
    "FLOW_NAME",
    "ClockChoice",
    "extra_progress",
    "prefect_approver",
    "prefect_stage",
    "run_campaign",
    "run_campaign_outcome",
]

#: The flow's name; its deployments have their own names (``run-campaign``, ``nightly-*``
#: in prefect.yaml), so the UI never shows two different things under one name.
FLOW_NAME = "advance-campaign"

#: The clocks a flow run may use (a choice in the UI's form). ``sim`` and ``scaled:F``
#: are refused against a real platform: they would write simulated time into the store.
ClockChoice = Literal["real", "sim", "scaled:60", "scaled:600", "scaled:3600"]

#: A progress sink of the caller (``fleetwave run`` sets its rich display here), called
#: beside the progress artifact when the flow runs in the caller's process.
extra_progress: ContextVar[ProgressSink | None] = ContextVar("extra_progress", default=None)

T = TypeVar("T")

log = logging.getLogger(__name__)


@task(name="campaign-stage", cache_policy=NO_CACHE, persist_result=False)
async def _stage(name: str, fn: Callable[[], Awaitable[Any]]) -> Any:
    """One engine stage (verify, plan, a running wave, a submission batch inside it ...)."""
    return await fn()


async def prefect_stage(name: str, fn: Callable[[], Awaitable[T]]) -> T:
    """The engine's StageRunner inside a flow run: each stage is one Prefect task run."""
    result: T = await _stage.with_options(task_run_name=name)(name, fn)
    return result


def _has_api_server() -> bool:
    return bool(get_current_settings().api.url)


def _pause_key(req: ApprovalRequest, retry: int = 0) -> str:
    """A pause key Prefect accepts (lowercase letters, digits, dashes), one per gate and per
    time it asks (Prefect refuses a key a run already paused with)."""
    again = f"-a{req.attempt}-{retry}" if req.attempt or retry else ""
    raw = f"approve-wave-{req.wave}-{req.token or 'gate'}{again}-{req.campaign}"
    return re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")[:100]


def prefect_approver(
    *, timeout: int, poll_interval: int, waves: int = 0, windows: str | None = None
) -> Approver:
    """Pause the flow run for an :class:`ApprovalInput` (a form in the Prefect UI).

    Only with a Prefect API server (an ephemeral one has no UI to answer from); on pause
    timeout, None: the run ends with the campaign awaiting approval. An answer that cannot
    be read, or that the engine refused (``req.problem``), is logged as one ERROR line and
    asked again, the reason at the top of the form. ``waves`` and ``windows`` (the
    campaign's wave count and windows in words) feed the form's text.
    """

    async def _approve(req: ApprovalRequest) -> ApprovalReply | None:
        if FlowRunContext.get() is None or not _has_api_server():
            return None
        logger = get_run_logger()
        retry = 0
        while True:
            if req.problem:
                logger.error(
                    "wave %s: the answer was refused (%s); the form asks again",
                    req.wave + 1,
                    req.problem,
                )
            form = ApprovalInput.with_initial_data(
                description=describe_approval(req, waves=waves, windows=windows),
                decision="approve",
            )
            try:
                answer = await apause_flow_run(
                    wait_for_input=form,
                    timeout=timeout,
                    poll_interval=poll_interval,
                    key=_pause_key(req, retry),
                )
            except FlowPauseTimeout:
                logger.warning(
                    "no answer for wave %s (%s) within %s s", req.wave + 1, req.wave_name, timeout
                )
                return None
            except ValidationError as exc:  # the server checks the schema; this is the rest
                req = dataclasses.replace(req, problem=input_problem(exc.errors()))
                retry += 1
                continue
            reply = ApprovalReply(
                approve=answer.decision == "approve",
                by="prefect",
                comment=answer.comment,
                start=answer.start,
                end=answer.end,
            )
            logger.info("%s", describe_decision(req, reply))
            return reply

    return _approve


@flow(name=FLOW_NAME, persist_result=False, validate_parameters=True)
async def run_campaign(
    campaign: str,
    clock: ClockChoice = "real",
    sleep_through_windows: bool = False,
    wait_for_lease: bool = False,
    approval_timeout: int = 3600,
    approval_poll_interval: int = 10,
    push: bool = False,
    accept_spec_change: bool = False,
    new_store: bool = False,
) -> State[Any]:
    """Advance the campaign in the YAML file ``campaign`` as far as it can go now.

    Ends in the state of the outcome (``flows.states.OUTCOME_STATES``; its data the outcome
    dict: completed, halted, rolled_back, waiting_window, awaiting_approval or failed); an
    input or environment the operator must fix (a wrong path, a lease another run holds) is
    one ERROR line and a Failed (or Cancelled ``AlreadyRunning``) state, never a traceback.
    A campaign with a ``consent:`` section serves the end-user consent API while the run
    lasts, or reuses the one already serving its store (FLEETWAVE_CONSENT_* settings on
    the worker; docs/consent-api.md). Prefect shows each argument's description below in
    the run form.

    Args:
        campaign: The campaign's YAML file, relative to the project directory the
            deployment was made from, e.g. campaigns/nightly-meters-firmware.yaml.
        clock: real for every real platform. sim (the simulator's own clock) and
            scaled:F (time F times faster) are for the simulator only, and refused
            against a real platform.
        sleep_through_windows: Sleep until the next window opens instead of ending the run
            when the current window closes (the run then lasts days).
        wait_for_lease: Wait for another live run of the same campaign to end instead of
            failing at once.
        approval_timeout: Seconds an approval form stays open; without an answer the run
            ends awaiting approval (answer later with `fleetwave approve`).
        approval_poll_interval: Seconds between checks for an answer to the form.
        push: Serve the push receiver (FLEETWAVE_NOTIFY_* settings on the worker) and
            poll the platform only as a safety net.
        accept_spec_change: Accept a change of fields a started campaign may not change
            (package, targets, waves ...); recorded with this flow run as who.
        new_store: Accept a store without fleetwave's schema and create it. Leave off for
            a production store: a new store would re-send devices already in flight.
    """
    logger = get_run_logger()
    try:
        outcome = await _advance(
            campaign,
            clock=clock,
            sleep_through_windows=sleep_through_windows,
            wait_for_lease=wait_for_lease,
            approval_timeout=approval_timeout,
            approval_poll_interval=approval_poll_interval,
            push=push,
            accept_spec_change=accept_spec_change,
            new_store=new_store,
        )
    except UserError as exc:
        message = await _refusal(exc)
        logger.error("%s", message)
        return error_state(exc, message)
    return outcome_state(outcome)


async def _advance(
    campaign: str,
    *,
    clock: str,
    sleep_through_windows: bool,
    wait_for_lease: bool,
    approval_timeout: int,
    approval_poll_interval: int,
    push: bool,
    accept_spec_change: bool,
    new_store: bool,
) -> dict[str, Any]:
    """The flow's work: advance the campaign, publish its report; the outcome dict."""
    logger = get_run_logger()
    spec = load_spec(campaign)
    ctx = FlowRunContext.get()
    flow_run_id = str(ctx.flow_run.id) if ctx is not None and ctx.flow_run is not None else None
    progress = ProgressArtifact(spec.name)

    run_log = RunLog(lambda line: logger.info("%s", line))

    engine = store.open_store_for_run(new_store=new_store)
    run_clock = clock_from_option(clock, platform=spec.platform)
    # the end-user API of a consent campaign, for as long as this run lasts (or the one
    # already serving this store); a port taken by anything else fails the run here
    consent_api = serve_consent_api(
        engine, consent=spec.consent is not None, now=run_clock.now, logger=logger
    )
    channel = None
    try:
        if push:
            from fleetwave.notify import PushChannel

            channel = PushChannel(engine, clock=run_clock).start()
        outcome = await advance(
            campaign,  # the file, so limits its platform cannot meet are shown at FILE:LINE
            db=engine,
            clock=run_clock,
            progress=combine_sinks(progress.sink, run_log, *filter(None, [extra_progress.get()])),
            approver=prefect_approver(
                timeout=approval_timeout,
                poll_interval=approval_poll_interval,
                waves=len(spec.waves),
                windows=describe_windows(spec),
            ),
            stage=prefect_stage,
            flow_run_id=flow_run_id,
            sleep_through_windows=sleep_through_windows,
            wait_for_lease=wait_for_lease,
            push=channel,
            accept_spec_change=accept_spec_change,
            operator=f"prefect:{flow_run_id}" if flow_run_id else "prefect",
        )
    finally:
        if channel is not None:
            channel.stop()
        if consent_api is not None:
            consent_api.stop()
    if not run_log.outcome_logged:  # outcomes without an engine event (nothing to advance)
        logger.info("campaign %s", outcome)
    try:
        from fleetwave.report.store import load_report

        with store.session_scope(engine, read_only=True) as s:
            report = load_report(s, spec.name)
        await publish_report(report)
    except Exception:  # the report must never fail a campaign run
        logger.warning("could not publish the campaign report", exc_info=True)
    return outcome.as_dict()


async def _refusal(exc: UserError) -> str:
    """The error's one line; a lease held by a Prefect flow run names that run (name, id,
    state) instead of the process holding it."""
    if not isinstance(exc, LeaseHeldError) or not exc.flow_run_id:
        return str(exc)
    try:
        async with get_client() as client:
            other = await client.read_flow_run(UUID(exc.flow_run_id))
    except Exception:  # the id is still worth showing
        return str(exc)
    state = other.state.name if other.state is not None else "unknown state"
    return (
        f"campaign {exc.campaign!r} is already being advanced by flow run "
        f"'{other.name}' ({other.id}, {state}); this run did nothing (let that run finish, "
        "answer its approval form, or cancel it)"
    )


async def run_campaign_outcome(**parameters: Any) -> dict[str, Any]:
    """Run the campaign flow in this process; its outcome dict, or its error raised (a
    :class:`UserError` keeps its exit code). For ``fleetwave run`` and the demo."""
    state = await run_campaign(**parameters, return_state=True)
    return await campaign_result(state)
