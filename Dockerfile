FROM python:3.11-slim
WORKDIR /srv
COPY pyproject.toml README.md ./
COPY lockcore ./lockcore
COPY lua ./lua
COPY app ./app
RUN pip install --no-cache-dir .
EXPOSE 8000
# LOCKCORE_REDIS_URL points at the shared Redis; without it the embedded server is used.
CMD ["lockcore", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
