# mlcd's container-action image.
#
# Stages (the classic builder builds every stage up to the target, so the stage
# that needs no toolchain comes first):
#   prebuilt  a runtime image around a binary built outside Docker
#             (docker build --target prebuilt --build-arg BINARY=path/to/mlcd .)
#             — what the tests and the act end-to-end test use
#   build     compiles mlcd in a Rust image
#   runtime   the published image (the default target): the binary on a small
#             base with CA certificates, exec-form ENTRYPOINT (no shell, so the
#             runner's hyphenated INPUT_MODEL-ID variables reach mlcd)
#
# Base images are build arguments so tests can substitute local ones.
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12

FROM ${RUNTIME_IMAGE} AS prebuilt
ARG BINARY=target/release/mlcd
COPY ${BINARY} /usr/local/bin/mlcd
ENTRYPOINT ["/usr/local/bin/mlcd"]

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin mlcd && cp target/release/mlcd /mlcd

FROM ${RUNTIME_IMAGE} AS runtime
LABEL org.opencontainers.image.title="mlcd" \
      org.opencontainers.image.description="Continuous delivery for machine-learning models" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /mlcd /usr/local/bin/mlcd
ENTRYPOINT ["/usr/local/bin/mlcd"]
