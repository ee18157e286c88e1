"""Customers' unique indexes lead with the platform id and the domain, the app's own index goes
(customer_app_created leads with the app) and so does the API token hash's LIKE index: identify's
lookup finds its row through them whatever the planner believes of the app's size, and a new
customer writes two index entries fewer. One transaction: uniqueness holds throughout."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('hub', '0012_activity_outbox'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='customer',
            name='customer_unique_platform_id',
        ),
        migrations.RemoveConstraint(
            model_name='customer',
            name='customer_unique_myshopify_domain',
        ),
        migrations.AlterField(
            model_name='customer',
            name='api_token_hash',
            field=models.CharField(blank=True, editable=False, max_length=64, null=True),
        ),
        migrations.AlterField(
            model_name='customer',
            name='app',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='customers', to='hub.app'),
        ),
        migrations.AddConstraint(
            model_name='customer',
            constraint=models.UniqueConstraint(condition=models.Q(('platform_id__isnull', False)), fields=('platform_id', 'platform', 'app'), name='customer_unique_platform_id'),
        ),
        migrations.AddConstraint(
            model_name='customer',
            constraint=models.UniqueConstraint(condition=models.Q(('myshopify_domain__isnull', False)), fields=('myshopify_domain', 'app'), name='customer_unique_myshopify_domain'),
        ),
        migrations.AddConstraint(
            model_name='customer',
            constraint=models.UniqueConstraint(fields=('api_token_hash',), name='customer_unique_api_token_hash'),
        ),
    ]
