"""WSGI entry point: `gunicorn hub.wsgi`.

Django's `get_wsgi_application`, with the API's paths through a shorter middleware chain
(hub.api_handler).
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
django.setup(set_prefix=False)

from hub.api_handler import HubWSGIHandler  # noqa: E402  # after django.setup()

application = HubWSGIHandler()
