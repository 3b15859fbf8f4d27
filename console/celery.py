"""The Celery app. Redis carries triggers only; the truth about work lives in PostgreSQL."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

app = Celery("replaydesk")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Live consumers and bulk recovery work never share a queue, so a big replay cannot starve live
# projections.
app.conf.task_queues = (Queue("default"), Queue("live"), Queue("recovery"))
app.autodiscover_tasks()
