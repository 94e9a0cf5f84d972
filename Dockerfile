# mlcd's container-action image.
#
# Stages (the classic builder builds every stage up to the target, so the stage
# that needs no toolchain comes first):
#   prebuilt  a development image around a binary built outside Docker, on a
#             glibc base (docker build --target prebuilt --build-arg BINARY=path/to/mlcd .)
#             — what the act end-to-end test uses with a `cargo build` binary
#   build     compiles a static mlcd (glibc, crt-static, `--profile dist`) in a
#             Rust image; with PREBUILT=path it takes a static binary built by
#             scripts/build-static from the build context instead of compiling
#             (what tests/action_image.rs does: no Rust image can be had there)
#   runtime   the published image (the default target): FROM scratch with the
#             static binary and the build image's CA certificates, nothing else;
#             exec-form ENTRYPOINT (no shell, so the runner's hyphenated
#             INPUT_MODEL-ID variables reach mlcd)
#
# Base images are build arguments so tests can substitute local ones.
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12

FROM ${RUNTIME_IMAGE} AS prebuilt
ARG BINARY=target/release/mlcd
COPY ${BINARY} /usr/local/bin/mlcd
ENTRYPOINT ["/usr/local/bin/mlcd"]

FROM ${RUST_IMAGE} AS build
ARG PREBUILT=
WORKDIR /src
COPY . ./
RUN set -eu; \
    if [ -n "$PREBUILT" ]; then \
      cp "$PREBUILT" /mlcd; \
    else \
      host=$(rustc -vV | sed -n 's/^host: //p'); \
      RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --profile dist --locked --bin mlcd --target "$host"; \
      cp "target/$host/dist/mlcd" /mlcd; \
    fi; \
    test -s /etc/ssl/certs/ca-certificates.crt

FROM scratch AS runtime
LABEL org.opencontainers.image.title="mlcd" \
      org.opencontainers.image.description="Continuous delivery for machine-learning models" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /mlcd /usr/local/bin/mlcd
ENTRYPOINT ["/usr/local/bin/mlcd"]
