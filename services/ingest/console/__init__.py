"""The web console at ``/console`` on the HTTP door: for the people who answer "did my mail
arrive?" — message search and timelines, suppressions, domains, webhooks, API keys and SMTP
credentials, and today's overview, in Japanese and English.

``pages`` has the routes, ``sessions`` sign-in, sessions, CSRF and lock-out, ``i18n`` the
words; ``templates/`` and ``static/`` are served from the package (no build step).
"""

from services.ingest.console.pages import mount

__all__ = ["mount"]
