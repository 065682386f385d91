"""The tools' arithmetic (tools/stats.py, tools/bench.py): percentiles, the open-loop timeline,
the figures of a measurement and the CPU per booking."""

from __future__ import annotations

import math

import pytest

from tools.bench import Result, cpu_budget, cpu_per_booking, phases
from tools.stats import median_and_max, percentile, schedule


def test_percentiles_interpolate_between_ranks():
    samples = [float(n) for n in range(1, 101)]  # 1..100

    assert percentile(samples, 50) == pytest.approx(50.5)
    assert percentile(samples, 99) == pytest.approx(99.01)
    assert percentile(samples, 100) == 100
    assert percentile([7.0], 95) == 7.0
    assert math.isnan(percentile([], 50))


def test_percentiles_do_not_depend_on_order():
    assert percentile([5.0, 1.0, 3.0], 50) == percentile([1.0, 3.0, 5.0], 50) == 3.0


def test_a_wait_is_reported_as_its_median_and_its_longest():
    assert median_and_max([3.0, 1.0, 2.0, 10.0]) == "p50 2.5 s, max 10.0 s"
    assert median_and_max([], "ms") == "p50 nan ms, max 0.0 ms"


def test_the_open_loop_timeline_is_evenly_spaced():
    plan = schedule(100, 2)

    assert len(plan) == 200
    assert plan[0] == 0
    assert plan[1] == pytest.approx(0.01)
    assert plan[-1] == pytest.approx(1.99)


def test_a_result_row_reports_rate_and_errors():
    row = Result("x", latencies_ms=[10.0, 20.0, 30.0], errors=1, seconds=2.0).row()

    assert (row["count"], row["errors"], row["p50_ms"], row["per_second"]) == (3, 1, 20.0, 1.5)


def test_cpu_per_booking_divides_what_each_part_spent():
    before = {"temporal": 10.0, "worker": 5.0}
    after = {"temporal": 12.0, "worker": 6.0, "web": 0.5}

    assert cpu_per_booking(before, after, bookings=10) == {"temporal": 200.0, "worker": 100.0, "web": 50.0}
    assert cpu_per_booking(before, after, bookings=0) == {}


def test_the_cpu_budget_is_what_lets_the_machine_book_at_three_quarters_of_the_floor():
    app = {"worker": 50.0, "temporal": 40.0, "web": 30.0}
    floor = {"temporal": 30.0, "floor worker": 18.0}

    # 0.75 x 20 = 15 bookings/s on 2 CPUs: 2,000 ms of CPU a second, 133 ms a booking.
    assert cpu_budget(app, floor, floor_rate=20.0, cpus=2) == (
        "CPU budget: at 0.75 of the floor's 20 bookings/s, a booking may cost at most 133 ms of CPU"
        " on 2 CPUs, all busy; the app's costs 120 ms, the floor's 48 ms"
    )


def test_phases_pair_each_end_with_the_last_start_before_it():
    history = [
        ("WORKFLOW_EXECUTION_STARTED", 10.000),
        ("WORKFLOW_TASK_SCHEDULED", 10.000),
        ("WORKFLOW_TASK_STARTED", 10.040),  # waited 40 ms for a worker
        ("MARKER_RECORDED", 10.100),
        ("WORKFLOW_TASK_COMPLETED", 10.100),  # ran 60 ms
        ("WORKFLOW_TASK_SCHEDULED", 10.300),
        ("WORKFLOW_TASK_STARTED", 10.310),
        ("WORKFLOW_TASK_COMPLETED", 10.330),
        ("ACTIVITY_TASK_SCHEDULED", 10.330),
        ("ACTIVITY_TASK_STARTED", 10.331),
        ("ACTIVITY_TASK_COMPLETED", 10.361),
        ("WORKFLOW_EXECUTION_COMPLETED", 10.400),
    ]

    found = phases(history)

    assert found["workflow task waits for a worker"] == pytest.approx([40.0, 10.0])
    assert found["workflow task runs (activation, local activities, the server's write)"] == pytest.approx(
        [60.0, 20.0]
    )
    assert found["payment activity runs (start to completion)"] == pytest.approx([30.0])
    assert found["whole workflow, first event to last"] == pytest.approx([400.0])
    assert phases([]) == {name: [] for name in found}
