# One image for the four services and the hato command; the process is chosen by the command
# (python -m services.ingest, ...). Used by docker-compose.yml and deploy/.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY hato ./hato
# /secrets and /rabbitmq-conf belong to hato so that a new volume mounted there does too (Docker
# copies the folder's owner into an empty volume): docker-compose.yml's secrets job writes Hato's
# secrets into the one and RabbitMQ's conf.d (its generated user) into the other.
RUN pip install . && useradd --system --uid 10001 hato \
    && install -d -o hato -m 700 /secrets && install -d -o hato -m 755 /rabbitmq-conf
USER hato
CMD ["python", "-m", "services.ingest"]
