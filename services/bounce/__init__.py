"""Bounce: what comes back — delivery results now; DSNs, complaints, suppressions and webhooks
grow here. It also owns the ``events`` timeline."""
