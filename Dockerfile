# syntax=docker/dockerfile:1
#
# The yolots image: the release binaries (`yolots`, and beside it `yolots-converter`,
# the only one that loads libtorch), libtorch 2.11.0 with its CUDA libraries, and the web
# page, on Debian 12. One image for the API (`serve`, the default command; it never maps
# libtorch) and for the GPU workers (`worker`; their conversion children load it).
#
#   docker build -t yolots .
#   docker run --rm -p 8080:8080 -e DATABASE_URL=postgres://... yolots
#
# The builder runs the project's own steps, the ones CI and a developer run:
# `cargo xtask setup --no-database` (libtorch from the PyPI `torch==2.11.0` wheel, the
# wasm toolchain, the web page) and `cargo xtask dist` (both binaries, the converter's
# run path set, libtorch and the CUDA libraries its run paths name, the web page: one
# folder that needs nothing else). The runtime stage copies that folder onto a slim Debian.

# The workspace's `rust-version` (Cargo.toml); the image's Rust must not be older.
ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-bookworm AS builder

# pip's index for the torch wheel. Empty: PyPI's default wheel, which for Linux x86_64
# is the CUDA build (what a GPU image needs). Set it to PyTorch's CPU wheel index for a
# CPU-only image without the ~3 GB of CUDA libraries; `torch==2.11.0` matches its
# `2.11.0+cpu` wheel.
ARG TORCH_INDEX_URL=

# What setup and dist use and would otherwise install with apt themselves: Python to
# fetch the torch wheel, a C++ compiler for the converter's libtorch shim, patchelf for
# the binary's run path, binaryen for wasm-opt (Debian 12's is too old for the page's
# wasm; setup then ships the page unoptimised, as it says).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential ca-certificates patchelf python3 python3-venv binaryen \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# Version-pinned downloads (the torch environment, wasm-bindgen-cli) and the cargo
# target folder live in BuildKit cache mounts, so a rebuild after a source change
# recompiles only what changed. Only /dist, outside the mounts, ends up in the layer
# (dist copies the libraries out of the cache).
ENV YOLOTS_CACHE_DIR=/cache/yolots \
    CARGO_TARGET_DIR=/cache/target
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/cache \
    if [ -n "$TORCH_INDEX_URL" ]; then export PIP_INDEX_URL="$TORCH_INDEX_URL"; fi \
    && cargo xtask setup --no-database \
    && cargo xtask dist --out /dist

FROM debian:bookworm-slim AS runtime

# The binaries need only glibc, libstdc++ and libgcc from the system (libgomp comes with
# libtorch); CA certificates for an S3 store over HTTPS. No curl: the health check
# below speaks HTTP with bash.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --uid 10001 --home-dir /var/lib/yolots \
        --shell /usr/sbin/nologin yolots \
    && mkdir -p /var/lib/yolots \
    && chown yolots:yolots /var/lib/yolots

COPY --from=builder /dist /opt/yolots

# Uploads and artifacts when no S3 store is set (YOLOTS_STORAGE); mount a volume here.
# The NVIDIA container runtime gives a container the GPUs it reserves; these
# capabilities are what libtorch needs of the driver.
ENV PATH=/opt/yolots/bin:$PATH \
    YOLOTS_DATA_DIR=/var/lib/yolots \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

USER yolots
WORKDIR /var/lib/yolots
VOLUME /var/lib/yolots
EXPOSE 8080

# `serve` answers 200 on /api/v1/health while it and its database are up. A container
# running `worker` answers nothing on 8080: give it a health check of its own (the
# compose file probes the worker's --metrics-bind) or none.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /api/v1/health HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

ENTRYPOINT ["/opt/yolots/bin/yolots"]
CMD ["serve", "--bind", "0.0.0.0:8080", "--web-dir", "/opt/yolots/web"]
