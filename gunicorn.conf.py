"""gunicorn's settings for the web process.

gunicorn reads ./gunicorn.conf.py by default, so docker compose's `web` service, the load and
fault benchmarks (bench/) and the fault tests all serve with it. Flags on the command line and
in GUNICORN_CMD_ARGS override it, e.g. GUNICORN_CMD_ARGS="--workers 5".

Threads let a worker overlap its database round trips and keep labelers' connections alive
(sync workers close them). The app is loaded once, in the master, and its objects are then
frozen out of the garbage collector (`gc.freeze`): a full collection in a worker scanned the
100,000 objects of Django and the app each time, 34-48 ms with every thread of that worker
stopped, and the slowest calls of the load benchmark were the ones caught in those pauses
(docs/benchmarks.md, "Collector pauses, worker balance and stale statistics"). Frozen, they are
skipped, and the workers' copies of those memory pages stay shared with the master.
"""

import gc

wsgi_app = "labelapp.wsgi"
bind = "0.0.0.0:8000"
workers = 3  # on 2 cores; 2x4, 4x2, 6x2 and 2x8 served as many (docs/benchmarks.md)
worker_class = "gthread"
threads = 4
keepalive = 120  # a labeler's connection outlives the seconds spent ranking one task
timeout = 30
preload_app = True


def when_ready(server) -> None:
    """Before the first worker is forked: load what Django would load on the first request,
    then freeze everything the master holds out of the collector's reach."""
    from django.db import connections
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 (imports the views, the API and its schemas)
    connections.close_all()  # a connection must not be shared by the forked workers
    gc.collect()
    gc.freeze()
