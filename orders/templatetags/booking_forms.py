"""``{% idempotency_field %}``: the key that makes a form's double submit, or a browser's retry
of it, safe (orders.idempotency). A fresh key each time the form is rendered."""

from __future__ import annotations

import uuid

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()

FIELD = "idempotency_key"


@register.simple_tag
def idempotency_field() -> SafeString:
    return format_html('<input type="hidden" name="{}" value="{}">', FIELD, uuid.uuid4().hex)
