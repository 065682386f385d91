"""A booking reference for every order (issue 28): added empty, drawn for the orders that exist,
then required and unique, new orders drawing theirs from the field's default."""

from django.db import migrations, models

import orders.models


def draw_references(apps, schema_editor):  # type: ignore[no-untyped-def]
    Order = apps.get_model("orders", "Order")
    taken: set[str] = set()
    for order in Order.objects.filter(reference__isnull=True).only("id").iterator():
        reference = orders.models.new_reference()
        while reference in taken:
            reference = orders.models.new_reference()
        taken.add(reference)
        Order.objects.filter(id=order.id).update(reference=reference)


class Migration(migrations.Migration):
    dependencies = [("orders", "0006_order_client_address_hold_life")]

    operations = [
        migrations.AddField(
            model_name="order", name="reference", field=models.CharField(max_length=6, null=True)
        ),
        migrations.RunPython(draw_references, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="order",
            name="reference",
            field=models.CharField(
                default=orders.models.new_reference, editable=False, max_length=6, unique=True
            ),
        ),
    ]
