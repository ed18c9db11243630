# The `leadflow` binary in a small image, for docker-compose.yml's streaming
# set-up (the provider sandbox and `leadflow stream`). librdkafka, zstd and
# jemalloc are C, built by their crates: the builder needs gcc, make, and
# libssl-dev with pkg-config (all in rust:bookworm); the runtime needs libssl3
# (ca-certificates brings it).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p leadflow-pipeline \
 && cp target/release/leadflow /usr/local/bin/leadflow

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/leadflow /usr/local/bin/leadflow
COPY examples /etc/leadflow/examples
ENTRYPOINT ["leadflow"]
