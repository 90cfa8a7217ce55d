import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotate.settings")
application = get_asgi_application()

# Once set up: no serving on queue functions of other code (a deploy without migrate).
from apps.judging.queue.installed import refuse_stale_functions  # noqa: E402

refuse_stale_functions()
