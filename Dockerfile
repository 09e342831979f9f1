# skymap_scanner image: server and client, RabbitMQ/NATS broker clients (Dockerfile_pulsar adds Pulsar).
#
#   docker build -t icecube/skymap_scanner:latest .
#   docker build --build-arg BASE_IMAGE=<an IceTray image with python3 >= 3.10> -t icecube/skymap_scanner:icetray .
#   # no registry (no python image to pull): a local Debian base, see resources/container_base.sh
#   docker build --network host --build-arg BASE_IMAGE="$(resources/container_base.sh)" -t icecube/skymap_scanner:latest .
#   docker run --rm icecube/skymap_scanner:latest                     # prints help
#   docker run --rm icecube/skymap_scanner:latest python -m skymap_scanner.server ...
#   docker run --rm icecube/skymap_scanner:latest python -m skymap_scanner.client ...
#
# The package is installed into a virtual environment at /opt/skyscan (on PATH), so the interpreter is
# /opt/skyscan/bin/python on every base; resources/client_starter.py uses that path for HTCondor jobs.
# Two stages: the first installs (pip, the source tree, and on IceTray bases the venv module), the second
# gets only the finished virtual environment. Only pyproject.toml, README.md and the package directory are
# in the build context (see .dockerignore): no secrets, no tests, no git metadata. Broker credentials are given
# at run time through SKYSCAN_* variables.

# A plain Python image by default so the image builds anywhere; a site with an IceTray image can pass it here.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE} AS build

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/skyscan/bin:$PATH

# IceTray bases are Ubuntu images whose python3 may lack the venv module; plain Python images have it.
# hadolint ignore=DL3008
RUN if ! python3 -c "import ensurepip, venv" 2>/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -c "import sys; assert sys.version_info >= (3, 10), 'skymap_scanner needs python3 >= 3.10'" \
    && python3 -m venv /opt/skyscan

WORKDIR /src
# The dependencies first, from pyproject.toml alone (with a placeholder package), so that a change to the code
# or the README reuses this layer (a rebuild then takes 30-45 s, not ~110 s); both Dockerfiles share it.
COPY pyproject.toml ./
# hadolint ignore=DL3013
RUN mkdir skymap_scanner && touch README.md skymap_scanner/__init__.py \
    && pip install --no-cache-dir . \
    && pip uninstall --yes --quiet skymap_scanner \
    && rm -rf /src/skymap_scanner /src/README.md /src/build

# Extras of the pip install: "" = RabbitMQ and NATS clients (the package's defaults); Dockerfile_pulsar: "[pulsar]".
ARG SKYSCAN_PIP_EXTRAS=""
COPY README.md ./
COPY skymap_scanner ./skymap_scanner
# DL3013: this installs the project's own source tree; its dependencies are bounded in pyproject.toml.
# Then what the scanner never runs is dropped: pip and setuptools (nothing imports them at run time) and the
# dependencies' own test suites (about 80 MB; astropy/tests stays, `import astropy` loads its runner).
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".${SKYSCAN_PIP_EXTRAS}" \
    && python -c "import skymap_scanner.events.geometry as g; g.icecube86()" \
    && pip uninstall --yes --quiet pip setuptools \
    && find /opt/skyscan/lib/python3*/site-packages -mindepth 2 -type d \( -name tests -o -name test \) \
        ! -path '*/site-packages/astropy/tests' -prune -exec rm -rf {} + \
    && python -c "import skymap_scanner.server.__main__, skymap_scanner.client.__main__, skymap_scanner.products"

FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/skyscan/bin:$PATH \
    HOME=/home/skyscan \
    MPLBACKEND=Agg

COPY --from=build /opt/skyscan /opt/skyscan

# An unprivileged user; its home is world-writable so `docker run --user UID:GID` (as the launch scripts do)
# and Apptainer's arbitrary UIDs can still write caches (astropy, matplotlib) there.
RUN groupadd --gid 10001 skyscan \
    && useradd --no-log-init --uid 10001 --gid 10001 --create-home --home-dir /home/skyscan --shell /bin/bash skyscan \
    && chmod 1777 /home/skyscan
USER 10001:10001
WORKDIR /home/skyscan

CMD ["bash", "-c", "echo 'skymap_scanner image: run \"python -m skymap_scanner.server ...\" or \"python -m skymap_scanner.client ...\"'; echo; python -m skymap_scanner.server --help; echo; python -m skymap_scanner.client --help"]
