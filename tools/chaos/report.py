"""The chaos suite's report: what the customers were answered, fault by fault, the money, the
violations, and for an order that never ended what the stores, Temporal and the logs say of it
(CI keeps nothing of a run but what it prints)."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections import Counter, defaultdict

from devstack.supervisor import ROOT
from orders.workflow_contract import workflow_id_for
from tools.chaos.checks import Findings, Money
from tools.chaos.customers import Journal
from tools.chaos.faults import Fault
from tools.chaos.stack import ChaosStack
from tools.stats import median_and_max

# The last line of a Python traceback: the exception's qualified name and its message.
ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit)\b.*$", re.M)


def report(
    journal: Journal, faults: list[Fault], stack: ChaosStack, findings: Findings, seconds: float, money: Money
) -> str:
    lines = [f"\nchaos: {len(journal.calls)} requests in {seconds:.0f} s of load"]
    by_endpoint: dict[str, Counter[int]] = defaultdict(Counter)
    for call in journal.calls:
        parts = call.path.strip("/").split("/")
        endpoint = f"{call.method} /api/orders" + ("/{id}/" + "/".join(parts[3:]) if len(parts) > 2 else "")
        by_endpoint[endpoint.rstrip("/")][call.status] += 1
    lines.append(f"\n{'request':32} {'answers (status: count)'}")
    for endpoint, statuses in sorted(by_endpoint.items()):
        lines.append(
            f"{endpoint:32} "
            + "  ".join(f"{status or 'none'}: {n}" for status, n in sorted(statuses.items()))
        )
    outcome = Counter(order["state"] for order in stack.orders())
    lines.append("\norders by outcome: " + ", ".join(f"{state} {n}" for state, n in sorted(outcome.items())))
    lines.append(f"\n{'fault':30} {'window s':>9} {'5xx':>5} {'202 pending':>12}")
    for fault in faults:
        low, high = fault.window()
        in_window = [c for c in journal.calls if low <= c.ended <= high]
        errors = sum(c.status >= 500 for c in in_window)
        pending = sum(c.status == 202 and bool(c.reply.get("pending")) for c in in_window)
        lines.append(f"{fault.name:30} {high - low:9.1f} {errors:5} {pending:12}")
    late = findings.lateness
    lines.append(
        f"\nhold release after the order ended (sampled every 0.5 s): {median_and_max(late)} "
        f"({len(late)} orders)"
    )
    lines += money.lines()
    lines.append(f"invariant violations: {len(findings.violations)}")
    lines += [f"  - {violation}" for violation in findings.violations[:50]]
    lines += findings.diagnosis
    return "\n".join(lines)


def diagnose(stack: ChaosStack, stuck: list[dict]) -> list[str]:
    """What is known of the orders that never ended (the first three), and of the worker."""
    lines: list[str] = []
    for order in stuck[:3]:
        lines += asyncio.run(explain(stack, order))
    if stuck:
        lines += worker_errors(stack) + busy_worker_threads(stack)
    return lines


async def explain(stack: ChaosStack, order: dict) -> list[str]:
    """What the row, the history rows, Temporal and the logs say of an order that never ended:
    the report carries it, because CI keeps nothing of the run but what it prints."""
    from temporalio.api.enums.v1 import PendingActivityState, PendingWorkflowTaskState

    order_id = order["id"]
    lines = [f"\n{order_id}: row {order['state']} v{order.get('version')}, updated {order['updated_at']}"]
    with stack.database() as db:
        for version, state, at, detail in db.execute(
            "SELECT version, state, at, detail FROM orders_orderevent WHERE order_id = %s ORDER BY id",
            (order_id,),
        ):
            lines.append(f"  event v{version} {state} at {at:%H:%M:%S.%f} {detail}")
        for attempt, outcome, started, finished in db.execute(
            "SELECT attempt, outcome, started_at, finished_at FROM payments_paymentattempt "
            "WHERE order_id = %s ORDER BY attempt",
            (order_id,),
        ):
            lines.append(f"  payment attempt {attempt} {outcome} {started:%H:%M:%S.%f} .. {finished}")
    try:
        client = await stack.temporal()
        handle = client.get_workflow_handle(workflow_id_for(order_id))
        described = await handle.describe()
        raw = described.raw_description
        lines.append(f"  workflow {described.status.name if described.status else '?'}")
        if raw.HasField("pending_workflow_task"):
            task = raw.pending_workflow_task
            state = PendingWorkflowTaskState.Name(task.state)
            lines.append(f"  pending workflow task: {state}, attempt {task.attempt}")
        for pending in raw.pending_activities:
            lines.append(
                f"  pending activity {pending.activity_type.name}: "
                f"{PendingActivityState.Name(pending.state)}, attempt "
                f"{pending.attempt}, last failure {pending.last_failure.message!r}"
            )
        events = [event async for event in handle.fetch_history_events()]
        for event in events[-20:]:
            kind = event.WhichOneof("attributes") or ""
            failure = getattr(getattr(event, kind, None), "failure", None)
            why = f" {failure.message!r}" if failure is not None and failure.message else ""
            at = event.event_time.ToDatetime()
            what = kind.removesuffix("_event_attributes")
            lines.append(f"  history {event.event_id} {at:%H:%M:%S.%f} {what}{why}")
    except Exception as error:  # a diagnosis never hides the finding it explains
        lines.append(f"  Temporal: {type(error).__name__}: {error}")
    for name in ("worker.log", "web.log", "temporal.log"):
        path = stack.data / name
        mentions = [line for line in path.read_text(errors="replace").splitlines() if order_id in line]
        lines += [f"  {name}: {line[:300]}" for line in mentions[-15:]]
    return lines


def worker_errors(stack: ChaosStack) -> list[str]:
    """The unexpected errors the worker's tracebacks end with, most frequent first (refusals and
    declines, ``ApplicationError``, left out): an activity retried without end shows as the same
    error again and again, and its traceback does not name the order."""
    text = (stack.data / "worker.log").read_text(errors="replace")
    errors = Counter(
        match.group(0)[:200]
        for match in ERROR_LINE.finditer(text)
        if not match.group(0).startswith("temporalio.exceptions.ApplicationError")
    )
    lines = ["\nunexpected errors in the worker's log (count):"]
    return lines + [f"  {n:4} {line}" for line, n in errors.most_common(8)]


def busy_worker_threads(stack: ChaosStack) -> list[str]:
    """The stacks of the worker's threads that are in the project's code (runworker dumps every
    thread on SIGUSR1): an activity blocked for good shows where."""
    log_file = stack.data / "worker.log"
    before = log_file.stat().st_size
    stack.signal("worker", signal.SIGUSR1)
    dump = ""
    deadline = time.monotonic() + 10
    while "Current thread" not in dump and time.monotonic() < deadline:  # the dump's last thread
        time.sleep(0.1)
        with log_file.open("rb") as file:
            file.seek(before)
            dump = file.read().decode(errors="replace")
    lines = ["\nworker threads in the project's code (SIGUSR1):"]
    for thread in dump.split("\n\n"):
        frames = thread.strip().splitlines()
        ours = any(str(ROOT) in frame and ".venv" not in frame for frame in frames[1:])
        if frames and frames[0].startswith("Thread") and ours:  # not the main thread's loop
            lines += [f"  {frame}" for frame in frames[:14]]
    return lines
