"""Forms of the Segment integration screen."""

from __future__ import annotations

from django import forms

from hub.models import Activity, App

from .models import Integration

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
