"""Member-facing forms. Every error is linked to its input for screen readers."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import authenticate
from django.contrib.auth.forms import PasswordResetForm, SetPasswordForm
from django.http import HttpRequest
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from members.gates import member_login_allowed
from members.models import User, normalize_email, validate_member_email
from members.services import absolute_url, password_reset_email

LOGIN_FAILED = "The email or password is not correct."


class AccessibleForm(forms.Form):
    """Point each invalid input at its error text (``aria-describedby``) and flag it."""

    def full_clean(self) -> None:
        super().full_clean()
        for name in self.errors:
            if name in self.fields:
                attrs = self.fields[name].widget.attrs
                attrs["aria-invalid"] = "true"
                auto_id = self[name].auto_id
                described = [f"{auto_id}_error"]
                if self.fields[name].help_text:
                    described.append(f"{auto_id}_helptext")
                attrs["aria-describedby"] = " ".join(described)
        if self.non_field_errors():
            for field in self.fields.values():
                field.widget.attrs.setdefault("aria-describedby", "form-errors")


class EmailField(forms.EmailField):
    default_validators = [validate_member_email]

    def to_python(self, value: Any) -> str:
        return normalize_email(super().to_python(value)) or ""


def _email_field() -> EmailField:
    return EmailField(
        label="Email", max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )


class SignupForm(AccessibleForm):
    email = _email_field()
    password = forms.CharField(
        label="Password",
        min_length=8,
        max_length=128,
        strip=False,
        help_text="At least 8 characters.",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password_confirm = forms.CharField(
        label="Confirm password",
        strip=False,
        max_length=128,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if (
            data.get("password")
            and data.get("password_confirm")
            and data["password"] != data["password_confirm"]
        ):
            self.add_error("password_confirm", "The two passwords do not match.")
        return data


class LoginForm(AccessibleForm):
    email = _email_field()
    password = forms.CharField(
        label="Password",
        strip=False,
        max_length=128,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )

    def __init__(self, *args: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
        self.request = request
        self.user: User | None = None
        super().__init__(*args, **kwargs)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        # authenticate() runs the hasher for unknown emails too, so timing reveals nothing.
        user = authenticate(self.request, username=data["email"], password=data["password"])
        if user is None or not user.is_active or not member_login_allowed(user):
            raise forms.ValidationError(LOGIN_FAILED)
        self.user = user
        return data


class MagicLinkForm(AccessibleForm):
    email = _email_field()


def _seat_count_field(label: str, least: int, most: int, help_text: str) -> forms.IntegerField:
    """How many seats of one tier to buy; the form starts at the least allowed."""
    return forms.IntegerField(
        label=label, min_value=least, max_value=most, initial=least, help_text=help_text
    )


class CompanyForm(AccessibleForm):
    company_name = forms.CharField(label="Company name", min_length=3, max_length=100)
    owner_seats = _seat_count_field(
        "Owner seats", 1, 100, "Owners manage the team and its billing. You take one owner seat."
    )
    team_seats = _seat_count_field(
        "Team seats", 0, 400, "Seats for colleagues. You can add more later."
    )

    def clean_company_name(self) -> str:
        name = self.cleaned_data["company_name"].strip()
        if len(name) < 3:
            raise forms.ValidationError("The company name must be at least 3 characters long.")
        return name


class ResetForm(AccessibleForm, PasswordResetForm):
    """Django's reset form, sending through our outbox instead of ``send_mail``."""

    email = _email_field()

    def get_users(self, email: str):  # type: ignore[override]
        # Members who only ever used magic links have no usable password yet; a reset link
        # proves they own the address, so it is how they set one.
        return User.objects.filter(email__iexact=normalize_email(email), is_active=True)

    def send_mail(
        self,
        subject_template_name: str,
        email_template_name: str,
        context: dict[str, Any],
        from_email: str | None,
        to_email: str,
        html_email_template_name: str | None = None,
    ) -> None:
        user: User = context["user"]
        uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
        path = reverse(
            "members:password_reset_confirm", kwargs={"uidb64": uidb64, "token": context["token"]}
        )
        password_reset_email(user=user, link=absolute_url(path))


class NewPasswordForm(AccessibleForm, SetPasswordForm):
    """Django's set-password form with linked errors."""
