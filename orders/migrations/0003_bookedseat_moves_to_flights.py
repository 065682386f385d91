"""BookedSeat moves to the flights app (the seat inventory's home): only Django's idea of which
app owns it changes here; flights' 0002 takes it over and renames its table."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("orders", "0002_order_requests")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="BookedSeat")], database_operations=[]
        )
    ]
