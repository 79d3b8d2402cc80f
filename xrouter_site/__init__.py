"""XRouter's Django project package.

The Celery app (:mod:`xrouter_site.celery`) is not imported here, unlike
Celery's Django example: the gunicorn workers never send a task, and
loading Celery costs each of them ~6.5 MB of RSS (bench/RESULTS.md). The
task modules import the app themselves (``@app.task``), so whatever sends a
task (the Celery worker, beat, the in-process scheduler, a shell) sends it
through the configured app; ``celery -A xrouter_site`` finds it as
``xrouter_site.celery.app``.
"""
