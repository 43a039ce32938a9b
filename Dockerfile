# The parallelrun image: the operator (`parallelrun operator`, the Helm chart's default)
# and the runner of the scoring and merge pods, with Azure Blob support.
#
#   docker build -t ghcr.io/parallelrun/parallelrun:0.1.0 .
#
# A scoring image adds the user's libraries on top (see examples/Dockerfile). The pods
# run as the non-root user 65532 with a read-only root filesystem; the operator gives
# them /scratch for temporary files.
FROM python:3.11-slim

WORKDIR /opt/parallelrun
COPY pyproject.toml README.md LICENSE ./
COPY parallelrun/ parallelrun/
COPY runner/ runner/
COPY operator/ operator/
RUN pip install --no-cache-dir ".[azure,operator]" && rm -rf /opt/parallelrun

WORKDIR /
USER 65532:65532
CMD ["parallelrun", "--help"]
