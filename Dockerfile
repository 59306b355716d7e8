# stellar-reconciler: `docker build -t stellar-reconciler .` then
# `docker run -e STELLAR_RPC_URL=... -p 3000:3000 stellar-reconciler` (see compose.yaml).
# Only linted (hadolint) in CI: no image is built or run there.

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
# A fixed uid and gid (10001), so a mounted volume can be chowned to it before the first start.
RUN groupadd --system --gid 10001 reconciler \
 && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /var/lib/reconciler reconciler
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    BIND_ADDR=0.0.0.0:3000 \
    DATABASE_URL=sqlite:////var/lib/reconciler/reconciler.db
USER 10001:10001
WORKDIR /var/lib/reconciler
VOLUME ["/var/lib/reconciler"]
EXPOSE 3000
# 200 from /health means healthy; 503 (or no answer) fails the check. The port follows BIND_ADDR.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('BIND_ADDR', '0.0.0.0:3000').rsplit(':', 1)[1]; urllib.request.urlopen('http://127.0.0.1:' + port + '/health', timeout=4)"]
# The service promises to stop within 10 s of SIGTERM; docker waits 10 s by default, so give
# it room with `docker stop -t 20` or compose's stop_grace_period.
STOPSIGNAL SIGTERM
ENTRYPOINT ["reconciler"]
CMD ["run"]
