import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
application = get_wsgi_application()

# What the process holds once it is set up (Django, the apps, their modules: about 150,000 objects) lives
# as long as the process does. Frozen, the collector no longer walks it at every full collection: those
# walks were the tail of a page that makes many objects (a 1,000-event stream's page: p95 150-195 ms
# against p50 60-90 ms before, p95 within 15 ms of p50 after; bench/README.md, section 9).
gc.freeze()
