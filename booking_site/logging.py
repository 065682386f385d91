"""Puts the order id on every log line that is about an order.

A record is about an order when it carries ``order_id`` (``extra={"order_id": ...}``), when it
comes from Temporal's workflow or activity logger, whose extras name the workflow id
``booking-<order id>``, or when Django logs it about a request for an order's page or API
(``django.request``: a 404, a 500).
"""

from __future__ import annotations

import logging
import re

from common.formats import ORDER_ID
from orders.workflow_contract import WORKFLOW_ID_PREFIX

ORDER_IN_PATH = re.compile(rf"/orders/({ORDER_ID})")


class OrderIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "order_id", None):
            record.order_id = _order_id_from_temporal(record) or _order_id_from_request(record) or "-"
        return True


def _order_id_from_temporal(record: logging.LogRecord) -> str | None:
    for key in ("temporal_workflow", "temporal_activity"):
        details = getattr(record, key, None)
        if isinstance(details, dict):
            workflow_id = str(details.get("workflow_id", ""))
            if workflow_id.startswith(WORKFLOW_ID_PREFIX):
                return workflow_id.removeprefix(WORKFLOW_ID_PREFIX)
    return None


def _order_id_from_request(record: logging.LogRecord) -> str | None:
    match = ORDER_IN_PATH.search(str(getattr(getattr(record, "request", None), "path", "")))
    return match.group(1) if match else None
