from django.apps import AppConfig
from django.conf import settings
from django.core import checks


class PaymentsConfig(AppConfig):
    name = "payments"

    def ready(self) -> None:
        checks.register(failpoints_off, checks.Tags.security, deploy=True)


def failpoints_off(**kwargs: object) -> list[checks.CheckMessage]:
    """``manage.py check --deploy`` fails while a failpoint is on (common/failpoints.py)."""
    if not settings.FAILPOINTS:
        return []
    names = ", ".join(sorted(settings.FAILPOINTS))
    return [checks.Error(f"failpoints are on ({names})", hint="unset FAILPOINTS", id="payments.E001")]
