"""Forms of the billing pages: a company purchase with its plan and interval."""

from __future__ import annotations

from typing import Any

from django import forms

from billing.catalogue import PlanOffer
from members.forms import CompanyForm


class CompanyPlanForm(CompanyForm):
    """The company form with the plan option chosen (``PlanOption.key``): one radio per plan
    and interval on sale. The catalogue, not the form, decides what a key may be, so a hidden
    or withdrawn option is refused by ``checkout_company_start`` with its own message."""

    price = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, offers: list[PlanOffer], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.offers = offers
        keys = [option.key for offer in offers for option in offer.options]
        self.chosen = self.data.get("price") or self.initial.get("price") or next(iter(keys), "")
