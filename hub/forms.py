from django import forms

from .models import Plan


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


CURRENCIES = ["USD", "EUR", "GBP", "CAD", "AUD", "NZD", "CHF", "SEK", "NOK", "DKK", "JPY", "INR", "BRL"]


class PlanForm(forms.Form):
    """A plan's name, price, currency and billing interval (the service checks them again)."""

    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs={"placeholder": "e.g. Pro"}))
    amount = forms.DecimalField(
        label="Price",
        min_value=0,
        max_digits=12,
        decimal_places=2,
        widget=forms.NumberInput(attrs={"step": "0.01", "min": "0", "placeholder": "0.00"}),
    )
    currency = forms.ChoiceField(choices=[(c, c) for c in CURRENCIES], initial="USD")
    interval = forms.ChoiceField(
        label="Billing interval", choices=Plan.Interval.choices, initial=Plan.Interval.EVERY_30_DAYS
    )

    def __init__(self, *args, plan: Plan | None = None, **kwargs):
        if plan is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "name": plan.name,
                "amount": plan.amount,
                "currency": plan.currency,
                "interval": plan.interval,
            }
        super().__init__(*args, **kwargs)
        if plan is not None and plan.currency not in CURRENCIES:
            own = (plan.currency, plan.currency)
            self.fields["currency"].choices = [own, *self.fields["currency"].choices]


class InviteForm(forms.Form):
    """Whom to invite to a workspace, and as what."""

    email = forms.EmailField(widget=forms.EmailInput(attrs={"placeholder": "name@company.com"}))
    role = forms.ChoiceField(
        choices=[
            ("member", "Member: apps, data and integrations"),
            ("owner", "Owner: also members and the workspace itself"),
        ],
        initial="member",
        widget=forms.RadioSelect,
    )


class NewPasswordForm(forms.Form):
    """A first password, typed twice and checked by AUTH_PASSWORD_VALIDATORS."""

    password1 = forms.CharField(
        label="Password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )
    password2 = forms.CharField(
        label="Password again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean(self):
        from django.contrib.auth.password_validation import validate_password

        data = super().clean()
        if data.get("password1") and data.get("password1") != data.get("password2"):
            self.add_error("password2", "The two passwords differ.")
        elif data.get("password1"):
            try:
                validate_password(data["password1"], self.user)
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return data
