"""What every read-only admin shares: operators see what the workflow recorded, and never add,
edit or delete it by hand (their actions go through the workflow instead)."""

from __future__ import annotations

from django.http import HttpRequest


class ReadOnlyAdminMixin:
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
