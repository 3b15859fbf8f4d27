"""The Celery app. Redis carries triggers only; the truth about work lives in PostgreSQL."""

import os

from celery import Celery
from celery.signals import worker_init
from kombu import Queue

from core import principals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

app = Celery("replaydesk")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Live consumers and bulk recovery work never share a queue, so a big replay cannot starve live
# projections.
app.conf.task_queues = (Queue("default"), Queue("live"), Queue("recovery"))
app.autodiscover_tasks()


@worker_init.connect
def _appends_are_the_workers(**_):
    """Tasks append as the console's background work (job and consumer audit records), not as whoever
    asked for them: that person's request recorded itself. Forked pool processes inherit this."""
    principals.run_as(principals.system("worker"))
