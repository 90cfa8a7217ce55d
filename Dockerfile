# The one image of annotate: web (gunicorn, the default command), worker and beat (celery).
# Configuration comes from the environment at run time; see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONPATH=/app

WORKDIR /app

# Dependencies first, from pyproject.toml (and the README it names), so that a change to the code
# does not reinstall them. The project installs no packages of its own
# ([tool.setuptools] packages = []): the code runs from /app, copied below.
COPY pyproject.toml README.md /tmp/build/
RUN pip install /tmp/build && rm -rf /tmp/build

COPY . /app

# Settings refuse to start with DEBUG off and no SECRET_KEY, so collectstatic gets a throwaway key
# that exists only in this build step; the real key is given at run time.
RUN DEBUG=false SECRET_KEY=collectstatic-build-only-not-a-secret \
    python manage.py collectstatic --noinput --verbosity 1

# A home directory, because gunicorn (25.1+) puts its control socket in ~/.gunicorn.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/annotate \
        --shell /usr/sbin/nologin annotate
# Background exports' folder (EXPORT_ROOT): the worker's scratch folder with the S3 storage, or
# the files themselves with EXPORT_STORAGE=local (mount a volume here; it takes this owner).
RUN mkdir -p /data/exports && chown annotate:annotate /data/exports
USER annotate

EXPOSE 8000

CMD ["gunicorn", "annotate.wsgi:application", \
     "--bind", "0.0.0.0:8000", \
     "--workers", "3", \
     "--worker-class", "gthread", "--threads", "4", \
     "--worker-tmp-dir", "/dev/shm", \
     "--access-logfile", "-"]
