from django import forms


class AppForm(forms.Form):
    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"autofocus": True}))


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        widget=forms.TextInput(attrs={"placeholder": "e.g. Production server"}),
    )


class WorkspaceForm(forms.Form):
    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"autofocus": True}))


class PlanChoiceForm(forms.Form):
    """Choose one of an app's plans (subscribe, or change the open subscription's plan)."""

    plan = forms.ModelChoiceField(queryset=None, to_field_name="public_id", empty_label=None)

    def __init__(self, *args, app, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["plan"].queryset = app.plans.order_by("amount", "name")


class ReviewForm(forms.Form):
    """A review of the app: a rating of 1 to 5 stars and an optional text."""

    rating = forms.TypedChoiceField(choices=[(n, f"{n} ★") for n in range(5, 0, -1)], coerce=int)
    text = forms.CharField(required=False, max_length=10_000, widget=forms.Textarea(attrs={"rows": 2}))


class CancelForm(forms.Form):
    """Why a subscription is cancelled (optional)."""

    reason = forms.CharField(required=False, max_length=255)
