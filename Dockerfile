# The service's image: the web server and the Celery workers run from it
# (docker-compose.yml). Build: docker build -t content-processor .
FROM python:3.11-slim

# A GPU worker's image needs a CUDA build of torch:
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 ...
# The default keeps the web and CPU images free of several GB of CUDA libraries.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore \
    PIP_EXTRA_INDEX_URL=${TORCH_INDEX_URL}

WORKDIR /app
COPY requirements.txt install.sh ./
RUN ./install.sh
COPY . .

# Not root: the service only writes under the contents folder (a volume).
RUN useradd --create-home --uid 10001 app && mkdir -p /data/contents \
    && chown app /data/contents
USER app
ENV PATHS_CONTENTS_DIR=/data/contents
EXPOSE 8081
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
