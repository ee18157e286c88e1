"""The operator's console applies the screens' checks: sources are made on the screens, mappings'
triggers are validated, an integration takes only its workspace's apps and a guarded custom host."""

import pytest
from django.test import Client

from integrations.models import Integration
from integrations.services import integration_save
from integrations.sources.models import Mapping, Source
from integrations.sources.services import source_create
from tests.factories import AppFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_adding_a_source_in_the_admin_points_to_the_screen_and_makes_nothing(staff, app):
    source_create(app=app, name="Segment")
    listing = staff.get("/admin/sources/source/").content.decode()

    first = staff.post("/admin/sources/source/add/", {"name": "One"}, follow=True)
    second = staff.post("/admin/sources/source/add/", {"name": "Two"}, follow=True)

    assert "/admin/sources/source/add/" not in listing
    assert first.status_code == second.status_code == 200
    assert "Sources screen" in second.content.decode()
    assert list(Source.objects.values_list("name", flat=True)) == ["Segment"]


def _mapping_form(mapping, **overrides):
    data = {"source": mapping.source_id, "name": mapping.name, "position": mapping.position,
            "enabled": "on", "trigger": mapping.trigger, "action": mapping.action,
            "fields": '{"event_name": {"path": "$.event"}, "customer_id": {"path": "$.userId"}}',
            "preset": ""}  # fmt: skip
    data.update(overrides)
    return data


def test_a_mapping_saved_in_the_admin_has_its_trigger_validated_with_the_position(staff, app):
    mapping = source_create(app=app, name="Segment").mappings.first()
    url = f"/admin/sources/mapping/{mapping.pk}/change/"

    bad = staff.post(url, _mapping_form(mapping, trigger='type = "track" and event =='))
    missing = staff.post(url, _mapping_form(mapping, fields='{"event_name": {"path": "$.event"}}'))
    good = staff.post(url, _mapping_form(mapping, trigger='type = "track" and event = "Export"'))

    assert bad.status_code == 200 and "Trigger:" in bad.content.decode()
    assert "at position" in bad.content.decode()
    assert missing.status_code == 200 and "customer_id must be mapped" in missing.content.decode()
    assert good.status_code == 302
    assert Mapping.objects.get(pk=mapping.pk).trigger == 'type = "track" and event = "Export"'


def test_a_mapping_inline_of_a_source_is_validated_too(staff, app):
    source = source_create(app=app, name="Segment")
    mappings = list(source.mappings.all())
    data = {"name": source.name, "enabled": "on", "mappings-TOTAL_FORMS": len(mappings),
            "mappings-INITIAL_FORMS": len(mappings), "mappings-MIN_NUM_FORMS": 0,
            "mappings-MAX_NUM_FORMS": 1000}  # fmt: skip
    for i, m in enumerate(mappings):
        data.update({f"mappings-{i}-id": m.pk, f"mappings-{i}-source": source.pk,
                     f"mappings-{i}-position": m.position, f"mappings-{i}-name": m.name,
                     f"mappings-{i}-enabled": "on", f"mappings-{i}-action": m.action,
                     f"mappings-{i}-trigger": m.trigger})  # fmt: skip
    data["mappings-0-trigger"] = "type = = track"

    response = staff.post(f"/admin/sources/source/{source.pk}/change/", data)

    assert response.status_code == 200 and "Trigger:" in response.content.decode()
    assert Mapping.objects.get(pk=mappings[0].pk).trigger == mappings[0].trigger


def _integration_form(integration, **overrides):
    data = {"workspace": integration.workspace_id, "kind": "segment", "name": integration.name,
            "region": "us", "custom_host": "", "apps": [a.pk for a in integration.apps.all()],
            "activities": ["installed", "upgraded"], "user_id_field": "", "enabled": "on", "attention_reason": ""}  # fmt: skip
    data.update(overrides)
    return data


def test_an_integration_in_the_admin_takes_only_its_workspaces_apps_and_a_guarded_host(staff, workspace, app):
    integration = integration_save(workspace=workspace, name="Prod", write_key="wk_1", apps=[app])
    url = f"/admin/integrations/integration/{integration.pk}/change/"
    stranger = AppFactory()

    other_app = staff.post(url, _integration_form(integration, apps=[app.pk, stranger.pk]))
    private = staff.post(url, _integration_form(integration, region="custom", custom_host="http://10.0.0.1/"))
    credentials = staff.post(
        url, _integration_form(integration, region="custom", custom_host="https://user:pw@example.com/")
    )
    empty = staff.post(url, _integration_form(integration, region="custom"))
    fine = staff.post(url, _integration_form(integration, region="eu", custom_host="http://ignored.test/"))

    assert (
        other_app.status_code == 200 and "Apps must belong to this workspace." in other_app.content.decode()
    )
    assert private.status_code == 200 and "The custom host cannot be used" in private.content.decode()
    assert credentials.status_code == 200 and "The custom host cannot be used" in credentials.content.decode()
    assert empty.status_code == 200 and "A custom region needs the host URL." in empty.content.decode()
    assert fine.status_code == 302
    integration = Integration.objects.get(pk=integration.pk)
    assert (integration.region, integration.custom_host) == ("eu", "")
    assert list(integration.apps.all()) == [app]
    assert integration.activities == ["installed", "upgraded"]  # checkboxes, as on the screen
