"""Fake external services (Stripe, Discord) that speak the real wire formats.

They are standalone servers used by the integration tests and by sandbox mode; nothing in
this package imports Django.
"""
