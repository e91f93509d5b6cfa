# Multi-stage build: compile with the full toolchain, run on a slim non-root image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin casehub

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/casehub --create-home casehub \
    && install -d -o casehub -g casehub /var/lib/casehub/data
COPY --from=build /src/target/release/casehub /usr/local/bin/casehub
USER casehub
WORKDIR /var/lib/casehub
ENV CASEHUB__SERVER__BIND=0.0.0.0:8080 \
    CASEHUB__STORE__DATA_DIR=/var/lib/casehub/data
EXPOSE 8080
# Created above, owned by casehub: a fresh named volume copies that ownership (a path the image
# lacked would come up owned by root, and the embedded store could not write).
VOLUME ["/var/lib/casehub/data"]
ENTRYPOINT ["casehub"]
CMD ["serve"]
