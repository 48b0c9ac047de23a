# One image for every Cumulus service; the service is the command:
#   docker run cumulus-finetune services.gateway      # runs `python -m services.gateway`
# and the CLI is `docker run --entrypoint cumulus cumulus-finetune topics create`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CUMULUS_STATE_DIR=/var/lib/cumulus

RUN useradd --create-home --uid 10001 --user-group cumulus

WORKDIR /opt/cumulus

# Dependencies first, from the metadata alone, so a code change doesn't reinstall torch.
COPY pyproject.toml README.md ./
COPY scripts/requirements.lock ./scripts/
RUN mkdir -p cumulus services ops \
    && touch cumulus/__init__.py services/__init__.py ops/__init__.py \
    && pip install -c scripts/requirements.lock . \
    && pip uninstall --yes cumulus-finetune \
    && rm -rf cumulus services ops build

COPY cumulus ./cumulus
COPY services ./services
COPY ops ./ops
RUN pip install --no-deps . && rm -rf build

# The state dir (and the artifacts volume mounted under it) must exist, owned by the service
# user, before the first start: Docker copies this ownership into a fresh named volume.
RUN mkdir -p /var/lib/cumulus/artifacts && chown -R cumulus:cumulus /var/lib/cumulus

USER cumulus
WORKDIR /var/lib/cumulus

ENTRYPOINT ["python", "-m"]
CMD ["services.gateway"]
