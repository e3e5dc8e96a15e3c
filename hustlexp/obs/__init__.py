"""Observability: request ids (context.py), structured JSON logs (logs.py), the per-request
hook (access.py), Prometheus metrics (metrics.py). Each request pays for one id, one log
line and one histogram sample; everything read from the database is read at scrape time."""
