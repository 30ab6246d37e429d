# The serving stub as an image: torch-free, onnxruntime (OpenVINO by build argument), a non-root user, tini as PID 1.
#
#   make image                      # = .ci/image-context (wheels into build/) + docker/podman build (docs/deploy.md)
#   docker run --rm -p 127.0.0.1:5000:5000 -v "$PWD/artifacts/demo/int8-dynamic:/models:ro" structbert-lite-serve
#
# The build context holds only build/wheels/ and build/variant/ (.dockerignore): .ci/image-context fills them on the
# host, because no package index is reached from inside the build (apt is). Build arguments:
#   BASE=debian:bookworm-slim   any Debian-like base whose python3 is 3.11 (the wheels are cp311)
#   OPENVINO=1                  also install the openvino extra (.ci/image-context --openvino fetched its wheels)
#   VARIANT=build/variant/NAME  bake that variant folder in at /models (.ci/image-context --variant DIR copies it
#                               there); `structbert-lite verify` checks it during the build
#   REVISION, SOURCE, VERSION  OCI labels org.opencontainers.image.revision/source/version (the publish
#                              workflow sets them: commit, repository URL, tag)
#   VARIANT_DIGEST             sha256 of the baked variant's manifest.json, label
#                              io.github.structbert-lite.variant.manifest-digest (.ci/image-context prints it)
ARG BASE=debian:bookworm-slim

# ---- install: a venv from the wheels, nothing else; only /opt/structbert-lite and /models leave this stage
FROM ${BASE} AS install
ARG OPENVINO=0
ARG VARIANT=
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/structbert-lite
COPY build/wheels/deps/ /wheels/deps/
# The dependencies first (a layer that survives code changes), then the project. Then what serving never loads
# goes (35 % of the venv): pip, onnxruntime's C-API library (its Python binding embeds the runtime; the image
# tests check the server maps no libonnxruntime.so), its conversion-time transformers/quantization/tools
# packages, numpy's tests.
RUN /opt/structbert-lite/bin/pip install --quiet --no-index --no-cache-dir --find-links /wheels/deps \
      /wheels/deps/*.whl
COPY build/wheels/project/ /wheels/project/
RUN extra=$([ "$OPENVINO" = 1 ] && echo '[openvino]' || true) \
 && /opt/structbert-lite/bin/pip install --quiet --no-index --no-cache-dir --no-deps /wheels/project/*.whl \
 && /opt/structbert-lite/bin/pip check \
 && if [ "$OPENVINO" = 1 ]; then /opt/structbert-lite/bin/python -c "import openvino"; \
    else ! /opt/structbert-lite/bin/python -c "import openvino" 2>/dev/null; fi \
 && /opt/structbert-lite/bin/pip uninstall --quiet -y pip setuptools \
 && site=$(echo /opt/structbert-lite/lib/python3*/site-packages) \
 && find "$site/numpy" -name tests -type d -prune -exec rm -rf {} + \
 && rm -rf "$site"/onnxruntime/capi/libonnxruntime.so.* "$site"/onnxruntime/transformers \
           "$site"/onnxruntime/quantization "$site"/onnxruntime/tools \
 && echo "installed structbert-lite${extra}"
COPY build/variant/ /variant/
RUN mkdir /models \
 && if [ -n "$VARIANT" ]; then \
      src="/variant/${VARIANT#build/variant/}"; \
      [ -f "$src/manifest.json" ] || { echo "VARIANT=$VARIANT: no manifest.json there (run .ci/image-context --variant DIR)"; exit 1; }; \
      cp -a "$src/." /models/ && /opt/structbert-lite/bin/structbert-lite verify /models; \
    fi

# ---- the image: Debian's python3 + tini + the venv
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin serve
COPY --from=install /opt/structbert-lite /opt/structbert-lite
COPY --from=install /models /models
# glibc: allocations over 1 MiB are mmapped and returned at once. Parsing the ONNX protobuf otherwise leaves its
# transient buffers in the heap: the StructBERT-base int8 server peaked at 275 MiB RSS before its warm-up's
# malloc_trim brought it to 202; with these, 205 MiB peak (docs/deploy.md).
ENV PATH=/opt/structbert-lite/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MALLOC_MMAP_THRESHOLD_=1048576 \
    MALLOC_TRIM_THRESHOLD_=1048576
# Declared here, not above: a build argument that changes (REVISION) re-runs only the steps after it.
ARG REVISION=unknown
ARG SOURCE=https://github.com/structbert-lite/structbert-lite
ARG VERSION=
ARG VARIANT=
ARG VARIANT_DIGEST=
LABEL org.opencontainers.image.title="structbert-lite-serve" \
      org.opencontainers.image.description="REST serving stub for gated CPU variants of the StructBERT Chinese sentiment classifier" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      io.github.structbert-lite.variant="${VARIANT}" \
      io.github.structbert-lite.variant.manifest-digest="${VARIANT_DIGEST}"
USER serve
WORKDIR /tmp
EXPOSE 5000
# /health answers 200 once the model answered its warm-up (503 while starting): no curl in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python3", "-c", "import sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:5000/health', timeout=2).status != 200)"]
STOPSIGNAL SIGTERM
# tini as PID 1 forwards SIGTERM: the server stops accepting, answers what is in flight, exits 0 (docs/deploy.md).
ENTRYPOINT ["tini", "--", "structbert-lite", "serve", "--host", "0.0.0.0", "--port", "5000"]
CMD ["--artifact", "/models"]
