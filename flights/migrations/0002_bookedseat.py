"""BookedSeat, moved here from the orders app: the same table (renamed), rows and constraint."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("flights", "0001_initial"),
        ("orders", "0003_bookedseat_moves_to_flights"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="BookedSeat",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        ("booked_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "flight",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="booked_seats",
                                to="flights.flight",
                            ),
                        ),
                        (
                            "seat",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="bookings",
                                to="flights.seat",
                            ),
                        ),
                        (
                            "order",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="booked_seats",
                                to="orders.order",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "orders_bookedseat",
                        "constraints": [
                            models.UniqueConstraint(fields=("flight", "seat"), name="one_booking_per_seat")
                        ],
                    },
                )
            ],
            database_operations=[],
        ),
        migrations.AlterModelTable(name="bookedseat", table=None),
    ]
