"""The OpenTunnel client: presigned WebSocket URLs, byte pumping, and `eice ssh`."""
