"""Sending as SendGrid's, Postmark's and Mailgun's clients do (their send endpoints, their
ways of giving the key, their error bodies), mapped onto Hato's own sending rules: a team
leaving one of them changes a base URL, not its code."""

from __future__ import annotations

from services.ingest.http.providers import mailgun, postmark, sendgrid

GUARDS = (sendgrid.GUARD, postmark.GUARD, mailgun.GUARD)
ROUTERS = (sendgrid.router, postmark.router, mailgun.router)
