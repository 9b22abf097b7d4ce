# lockcore's HTTP service. Two stages: the first installs lockcore and its dependencies,
# pinned by deploy/constraints.txt, into a venv; the second is a clean python:3.11-slim
# with only that venv (no pip cache, no source tree, no build tooling), run as a non-root
# user with a fixed uid/gid (10001, what deploy/k8s/deployment.yaml runs as).
#   docker build -t lockcore .
#   docker run -p 8000:8000 -e LOCKCORE_REDIS_URL=redis://redis:6379/0 lockcore

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/lockcore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY deploy/constraints.txt ./deploy/constraints.txt
COPY lockcore ./lockcore
COPY lua ./lua
COPY app ./app
# Every dependency at the version in deploy/constraints.txt (wheels for all of them: no
# compiler needed); `pip check` fails the build on an inconsistent set.
RUN /opt/lockcore/bin/pip install -c deploy/constraints.txt . \
    && /opt/lockcore/bin/pip check

FROM python:3.11-slim
ENV PATH=/opt/lockcore/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOCKCORE_DATA_DIR=/var/lib/lockcore
RUN groupadd --system --gid 10001 lockcore \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/lockcore \
       --no-create-home --shell /usr/sbin/nologin lockcore \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/lockcore
COPY --from=build /opt/lockcore /opt/lockcore
WORKDIR /srv
# The embedded redis-server's data directory (used when LOCKCORE_REDIS_URL is unset): a
# volume, so the locks outlive the container. Owned by the image's user; a host directory
# mounted here must be writable by uid 10001.
VOLUME ["/var/lib/lockcore"]
USER 10001:10001
EXPOSE 8000
# Ready: Redis answers and the scripts are loaded (python's urllib: the slim image has no
# curl). A 503 from /readyz raises, and so does a refused connection.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
# SIGTERM drains (waiters answered 503, requests in progress finished) within
# LOCKCORE_REDIS_TIMEOUT + 5 s: give `docker stop -t` / stop_grace_period more than that.
STOPSIGNAL SIGTERM
# LOCKCORE_REDIS_URL points at the shared Redis; without it the embedded server is used.
# Never the demo catalog (its keys are public): create the first sysadmin with
#   docker compose run --rm app1 lockcore users add ID --name NAME --role sysadmin
CMD ["lockcore", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--no-demo"]
