# syntax=docker/dockerfile:1
# Both images from one build (the workspace compiles once):
#   docker build --target aggregator -t ghcr.io/dwell-autoscaler/dwell-aggregator:0.1.0 .
#   docker build --target sidecar    -t ghcr.io/dwell-autoscaler/dwell-sidecar:0.1.0 .
# Runtime: distroless/cc (glibc, CA certificates for amqps://, no shell), user 65532 (nonroot).
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# protox compiles the .proto files in build.rs, and ring only needs the C compiler already in the
# image, so no system packages are installed.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --profile dist -p dwell-aggregator -p dwell-sidecar \
    && mkdir -p /out \
    && cp target/dist/dwell-aggregator target/dist/dwell-sidecar /out/

FROM gcr.io/distroless/cc-debian12:nonroot AS aggregator
COPY --from=build /out/dwell-aggregator /usr/local/bin/dwell-aggregator
USER 65532:65532
# 6443: HTTPS metrics API (custom/external metrics, health, /metrics); 50051: gRPC ingest.
EXPOSE 6443 50051
ENTRYPOINT ["/usr/local/bin/dwell-aggregator"]

FROM gcr.io/distroless/cc-debian12:nonroot AS sidecar
COPY --from=build /out/dwell-sidecar /usr/local/bin/dwell-sidecar
USER 65532:65532
# 9127: /healthz and /metrics. The report listeners bind 127.0.0.1 (pod-local).
EXPOSE 9127
ENTRYPOINT ["/usr/local/bin/dwell-sidecar"]
