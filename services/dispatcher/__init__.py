"""Dispatcher: delivers each job to its destination over SMTP and reports every outcome."""
