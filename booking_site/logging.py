"""Puts the order id on every log line that is about an order.

A record is about an order when it carries ``order_id`` (``extra={"order_id": ...}``) or when it
comes from Temporal's workflow or activity logger, whose extras name the workflow id
``booking-<order id>``.
"""

from __future__ import annotations

import logging

WORKFLOW_ID_PREFIX = "booking-"


class OrderIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "order_id", None):
            record.order_id = _order_id_from_temporal(record) or "-"
        return True


def _order_id_from_temporal(record: logging.LogRecord) -> str | None:
    for key in ("temporal_workflow", "temporal_activity"):
        details = getattr(record, key, None)
        if isinstance(details, dict):
            workflow_id = str(details.get("workflow_id", ""))
            if workflow_id.startswith(WORKFLOW_ID_PREFIX):
                return workflow_id.removeprefix(WORKFLOW_ID_PREFIX)
    return None
