# Heartbeat node image, FROM scratch: nothing but the static binary.
#
# This machine's Docker engine has no image registry, so the binary is built on
# the host (CGO_ENABLED=0, fully static) and copied in. Build both with one
# command:
#
#     scripts/docker-build.sh            # -> image heartbeat:local
#
# scripts/docker-build.sh stages a tiny build context (the binary plus an empty,
# non-root-owned /data) so the whole repository is never sent to the daemon.
# With a registry, a multi-stage build does the same in one file; see
# test/chaos/README.md ("Building with a registry").
FROM scratch

# The binary is its own healthcheck (`heartbeat health`), CLI and server.
COPY heartbeat /heartbeat
# /data and /tmp, owned by the unprivileged user the node runs as. A named
# volume mounted on /data starts from this directory, ownership included.
COPY --chown=65532:65532 rootfs/ /

USER 65532:65532
ENV HEARTBEAT_DATA_DIR=/data \
    HEARTBEAT_PEER_ADDR=0.0.0.0:7400 \
    HEARTBEAT_CLIENT_ADDR=0.0.0.0:7401 \
    HEARTBEAT_HTTP_ADDR=0.0.0.0:7402 \
    HEARTBEAT_LOG_FORMAT=json
VOLUME ["/data"]
# peer gRPC (raft + cluster admin), client gRPC (Coordinator), HTTP.
EXPOSE 7400 7401 7402
HEALTHCHECK --interval=2s --timeout=2s --start-period=5s --retries=3 \
    CMD ["/heartbeat", "health", "--addr", "127.0.0.1:7401"]
ENTRYPOINT ["/heartbeat"]
CMD ["run"]
