FROM python:3.11-slim
WORKDIR /srv
COPY pyproject.toml README.md ./
COPY lockcore ./lockcore
COPY lua ./lua
COPY app ./app
RUN pip install --no-cache-dir . \
    && useradd --system --home-dir /srv lockcore \
    && mkdir /srv/lockcore-data && chown lockcore /srv/lockcore-data
USER lockcore
EXPOSE 8000
# LOCKCORE_REDIS_URL points at the shared Redis; without it the embedded server is used.
# Never the demo catalog (its keys are public): create the first sysadmin with
#   docker compose run --rm app1 lockcore users add ID --name NAME --role sysadmin
CMD ["lockcore", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--no-demo"]
