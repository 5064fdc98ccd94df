# One image for every role: `docker run IMAGE nameserver|master|worker|analysis ...` (see launch/container.py).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # Serpent only: the pickle serializer would let anyone who reaches a port run code in the container.
    PYRO_SERIALIZER=serpent \
    PYRO_SERIALIZERS_ACCEPTED=serpent

WORKDIR /app
# Dependencies first, from pyproject.toml alone (README.md is a placeholder here), so a change to the code
# or the docs rebuilds only the last layers.
# HpBandSter needs netifaces, which has no wheel for Python 3.11: compile it, then drop the compiler.
COPY pyproject.toml ./
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null \
    && touch README.md && mkdir hpo_service workers launch analysis \
    && touch hpo_service/__init__.py workers/__init__.py launch/__init__.py analysis/__init__.py \
    && pip install --no-cache-dir . \
    && pip uninstall -y -q hpo-service \
    && apt-get purge -y -qq gcc libc6-dev >/dev/null && apt-get autoremove -y -qq >/dev/null \
    && rm -rf /var/lib/apt/lists/* hpo_service workers launch analysis

COPY README.md ./
COPY hpo_service hpo_service
COPY workers workers
COPY launch launch
COPY analysis analysis
RUN pip install --no-cache-dir --no-deps -q . \
    && useradd --create-home --uid 1000 hpo \
    && mkdir -p /runs /data /tls \
    && chown hpo:hpo /runs /tls && chmod 0700 /tls

# Run dirs (named volume, created owned by this user from the image's /runs) and read-only datasets.
# /tls: the runs' certificates (compose's `tls` volume takes this directory's owner and mode 0700).
VOLUME ["/runs"]
USER hpo
ENTRYPOINT ["python", "-m", "launch.container"]
CMD ["master"]
