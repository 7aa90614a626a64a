# line: the relay and its embedded client in one small image.
#
#   docker build -t line.example.com/line .
#   docker run -d --rm --name line -p 7777:443 -e APIKEY=... -e SITEURL=https://line.example.com \
#     -v /etc/line/fullchain.pem:/tmp/fullchain.pem:ro \
#     -v /etc/line/privkey.pem:/tmp/privkey.pem:ro line.example.com/line
#
# (The pair readable by gid 65532 and rewritten in place on renewal: README, Deploy.)
# The build stage runs the same two scripts CI runs (`scripts/setup.sh --build-only`, then
# `scripts/release.sh`, which `just build` calls). CI builds the runtime stage below around that
# dist/line-server and runs it with Docker as above (scripts/docker-test.sh); `just
# test-docker-build` builds the whole file.

# Debian 12, like the runtime image below: the binary links the same glibc.
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    scripts/setup.sh --build-only
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/release.sh

# Only the binary: no shell, no package manager, no curl (the health check is the binary itself).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/dist/line-server /usr/local/bin/line-server
# The documented run line publishes container port 443 and mounts the certificate pair at the
# default paths (/tmp/fullchain.pem, /tmp/privkey.pem) that line-server falls back to.
ENV PORT=443
# HTTPS on TCP, WebTransport on UDP, by default the same number (WEBTRANSPORT_PORT moves the
# latter; the README's run line publishes it under another number and names that one with
# WEBTRANSPORT_PUBLIC_PORT).
EXPOSE 443 443/udp
# A non-root user (distroless "nonroot"). Binding 443 needs no capability: Docker (20.10+), Podman
# and containerd 2 set net.ipv4.ip_unprivileged_port_start=0 in each container's own network
# namespace. On an older engine add `--sysctl net.ipv4.ip_unprivileged_port_start=0`.
USER 65532:65532
HEALTHCHECK --interval=30s --timeout=10s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/line-server", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/line-server"]
