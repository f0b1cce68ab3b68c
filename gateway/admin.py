"""django-otp's device admins show each device's secret key and recovery codes: not in ours.

Devices are created by the enrolment page and removed by ``manage.py staff_otp_reset``.
"""

from __future__ import annotations

from django.contrib import admin
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

for _model in (TOTPDevice, StaticDevice):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
