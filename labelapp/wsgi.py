"""WSGI entry point (gunicorn labelapp.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labelapp.settings")
application = get_wsgi_application()
