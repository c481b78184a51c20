# The xcluster-cni image: the compiled binary, the standard CNI plugins that the installer
# copies to the host, and iproute2 for ROUTE_ADAPTER=iproute2 (the default, netlink, runs no
# program). Build with ./build.sh image.
ARG DENO_VERSION=2.9.6

FROM denoland/deno:bin-${DENO_VERSION} AS deno

FROM debian:bookworm-slim AS build
ARG VERSION=v0.0.0-unknown
COPY --from=deno /deno /usr/local/bin/deno
WORKDIR /src
COPY . .
RUN echo "{ \"version\": \"${VERSION}\" }" > src/version.json \
 && deno compile -A --output /xcluster-cni main.ts

FROM debian:bookworm-slim AS plugins
RUN apt-get update \
 && apt-get install -y --no-install-recommends containernetworking-plugins \
 && mkdir -p /plugins \
 && cp /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/loopback /plugins/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=plugins /plugins/ /opt/xcluster-cni/cni/
COPY --from=build /xcluster-cni /usr/local/bin/xcluster-cni
# DAEMON_RUNTIME_ENV in src/config.ts: the daemon's memory after the first list.
ENV DENO_V8_FLAGS=--max-semi-space-size=1,--expose-gc MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=65536
ENTRYPOINT ["/usr/local/bin/xcluster-cni"]
CMD ["daemon"]
