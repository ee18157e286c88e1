"""Forms of the Segment integration screen."""

from __future__ import annotations

import json

from django import forms

from hub.models import Activity, App

from .models import Backfill, Integration

_KIND_LABELS = dict(Activity.Kind.choices)


class SegmentIntegrationForm(forms.Form):
    name = forms.CharField(max_length=100, initial="Segment")
    write_key = forms.CharField(
        required=False,
        max_length=200,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Your Segment source's write key. Stored encrypted.",
    )
    region = forms.ChoiceField(choices=Integration.Region.choices, widget=forms.RadioSelect, initial="us")
    custom_host = forms.URLField(
        required=False,
        max_length=300,
        assume_scheme="https",
        label="Custom host URL",
        widget=forms.URLInput(attrs={"placeholder": "https://segment-proxy.example.com"}),
    )
    apps = forms.ModelMultipleChoiceField(
        queryset=App.objects.none(), required=False, widget=forms.CheckboxSelectMultiple
    )
    app_activities = forms.MultipleChoiceField(
        choices=[(k, _KIND_LABELS[k]) for k in Activity.APP_KINDS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    subscription_activities = forms.MultipleChoiceField(
        choices=[(k, _KIND_LABELS[k]) for k in Activity.SUBSCRIPTION_KINDS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    usage_activities = forms.MultipleChoiceField(
        choices=[(k, _KIND_LABELS[k]) for k in Activity.USAGE_KINDS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    use_custom_field = forms.BooleanField(required=False, label="Send a custom field as the user ID")
    user_id_field = forms.CharField(
        required=False,
        max_length=100,
        label="Custom field",
        widget=forms.TextInput(attrs={"placeholder": "e.g. crm_id"}),
    )
    enabled = forms.BooleanField(
        required=False,
        initial=True,
        label="Send events to Segment",
        widget=forms.CheckboxInput(attrs={"class": "switch", "role": "switch"}),
    )

    def __init__(self, *args, workspace, integration: Integration | None = None, **kwargs):
        if integration is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "name": integration.name,
                "region": integration.region,
                "custom_host": integration.custom_host,
                "apps": list(integration.apps.all()),
                "app_activities": [k for k in integration.activities if k in Activity.APP_KINDS],
                "subscription_activities": [
                    k for k in integration.activities if k in Activity.SUBSCRIPTION_KINDS
                ],
                "usage_activities": [k for k in integration.activities if k in Activity.USAGE_KINDS],
                "use_custom_field": bool(integration.user_id_field),
                "user_id_field": integration.user_id_field,
                "enabled": integration.enabled,
            }
        super().__init__(*args, **kwargs)
        self.integration = integration
        self.fields["apps"].queryset = workspace.apps.order_by("name")
        if integration is None:
            self.fields["write_key"].required = True
        else:
            self.fields[
                "write_key"
            ].help_text = "Leave blank to keep the current key; enter a new one to replace it."

    def clean(self):
        data = super().clean()
        if data.get("region") == "custom" and not data.get("custom_host"):
            self.add_error("custom_host", "Enter the host URL for a custom region.")
        if data.get("use_custom_field") and not (data.get("user_id_field") or "").strip():
            self.add_error("user_id_field", "Name the customer's custom field to send as the user ID.")
        return data

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "write_key": data.get("write_key") or None,
            "region": data["region"],
            "custom_host": data.get("custom_host") or "",
            "apps": list(data["apps"]),
            "activities": [
                *data["app_activities"],
                *data["subscription_activities"],
                *data["usage_activities"],
            ],
            "user_id_field": data["user_id_field"] if data.get("use_custom_field") else "",
            "enabled": data["enabled"],
        }


class DestinationForm(forms.Form):
    """A destination of one kind: where it sends, its credential, its apps and kind settings."""

    name = forms.CharField(max_length=100)
    url = forms.URLField(required=False, max_length=300, assume_scheme="https", label="URL")
    secret = forms.CharField(
        required=False,
        max_length=500,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )
    client_id = forms.CharField(required=False, max_length=200, label="Kable client ID")
    app_id = forms.CharField(required=False, max_length=200, label="Mantle app ID")
    environment = forms.ChoiceField(
        choices=[("live", "Live"), ("test", "Test")],
        required=False,
        initial="live",
        widget=forms.RadioSelect,
        label="Kable keys",
    )
    batch = forms.BooleanField(
        required=False,
        label="Batch messages (arrays of up to 100)",
        help_text="Otherwise one message per request.",
    )
    apps = forms.ModelMultipleChoiceField(
        queryset=App.objects.none(), required=False, widget=forms.CheckboxSelectMultiple
    )
    enabled = forms.BooleanField(
        required=False,
        initial=True,
        label="Send to this destination",
        widget=forms.CheckboxInput(attrs={"class": "switch", "role": "switch"}),
    )

    LABELS = {
        "metronome": ("API token", "Base URL (blank: https://api.metronome.com)"),
        "kable": ("Kable client secret", "Base URL (blank: Kable's live or test host)"),
        "chartmogul": ("ChartMogul webhook URL", ""),
        "mantle": ("Mantle app API key", "App API base URL (blank: https://appapi.heymantle.com/v1)"),
        "webhook": ("Signing secret (whsec_…; blank: one is generated)", "Endpoint URL"),
    }

    def __init__(self, *args, workspace, kind: str, integration: Integration | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.fields["apps"].queryset = App.objects.filter(workspace=workspace).order_by("name")
        secret_label, url_label = self.LABELS[kind]
        self.fields["secret"].label, self.fields["url"].label = secret_label, url_label
        self.fields["url"].required = kind == "webhook"
        if kind == "chartmogul":
            self.fields["secret"].widget = forms.PasswordInput(
                render_value=False, attrs={"autocomplete": "off"}
            )
            self.fields[
                "secret"
            ].help_text = "Settings → Data platform → Add a source → Segment in ChartMogul; stored encrypted."
        if integration is not None:
            config = integration.config or {}
            self.fields["secret"].help_text = "Stored encrypted. Leave blank to keep the current one."
            self.initial.update(
                name=integration.name, url=integration.custom_host, enabled=integration.enabled,
                apps=list(integration.apps.all()), client_id=config.get("client_id", ""),
                environment=config.get("environment", "live"), batch=bool(config.get("batch")),
                app_id=config.get("app_id", ""),
            )  # fmt: skip
        elif kind == "webhook":
            self.fields[
                "secret"
            ].help_text = "Leave blank to have one generated; it is shown on the next screen."
        else:
            self.fields["secret"].required = True

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        config: dict = {}
        if self.kind == "mantle":
            config = {"app_id": data["app_id"].strip()}
        elif self.kind == "kable":
            config = {"client_id": data["client_id"].strip(), "environment": data["environment"] or "live"}
        elif self.kind == "webhook" and data["batch"]:
            config = {"batch": True}
        return {
            "kind": self.kind, "name": data["name"], "url": data["url"], "secret": data["secret"],
            "apps": list(data["apps"]), "config": config, "enabled": data["enabled"],
        }  # fmt: skip


class SubscriptionForm(forms.Form):
    """A subscription's trigger (FQL) and mapping (target: value spec, as JSON)."""

    name = forms.CharField(max_length=100)
    trigger = forms.CharField(max_length=2000, widget=forms.TextInput(attrs={"class": "mono"}))
    fields = forms.CharField(
        label="Mapping",
        widget=forms.Textarea(attrs={"rows": 12, "class": "mono", "spellcheck": "false"}),
        help_text='Each target takes a value spec: {"path": "$.properties.shop"}, {"literal": 1}, '
        '{"template": "{{event}}"}, {"coalesce": [...]} or {"object": {...}}.',
    )
    enabled = forms.BooleanField(
        required=False, widget=forms.CheckboxInput(attrs={"class": "switch", "role": "switch"}), label="On"
    )

    def clean_fields(self):

        try:
            value = json.loads(self.cleaned_data["fields"])
        except ValueError as exc:
            raise forms.ValidationError(f"The mapping is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("The mapping is a JSON object of targets.")
        return value


class BackfillForm(forms.Form):
    items = forms.ChoiceField(label="Send", choices=Backfill.Items.choices)
    since = forms.DateTimeField(widget=forms.DateTimeInput(attrs={"type": "datetime-local"}), label="From")
    until = forms.DateTimeField(widget=forms.DateTimeInput(attrs={"type": "datetime-local"}), label="To")

    def __init__(self, *args, items: list[str] | None = None, **kwargs):
        """`items`: what the destination takes (`Backfill.Items` values), the choices offered."""
        super().__init__(*args, **kwargs)
        if items is not None:
            self.fields["items"].choices = [c for c in Backfill.Items.choices if c[0] in items]
