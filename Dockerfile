# syntax=docker/dockerfile:1
# Production image: `tiketi serve` behind your load balancer; run `tiketi migrate` as a
# separate release step (e.g. `docker run --rm IMAGE tiketi migrate`).
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY src ./src
COPY alembic ./alembic
RUN python -m venv /opt/venv && /opt/venv/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 TIKETI_ENV=production
RUN useradd --system --uid 10001 --home-dir /app tiketi
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER tiketi
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=2).status != 200)"]
CMD ["tiketi", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
