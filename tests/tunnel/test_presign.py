"""Presigned OpenTunnel URLs: the AWS CLI's test vector, byte for byte."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

from botocore.credentials import Credentials

from access.tunnel.presign import presign_open_tunnel_url

HOST = "eice-123.ec2-instance-connect-endpoint.us-west-2.amazonaws.com"


def test_presigned_url_matches_the_aws_cli_test_vector() -> None:
    url = presign_open_tunnel_url(
        credentials=Credentials("access_key", "secret_key"),
        region="us-west-2",
        dns_name=HOST,
        endpoint_id="eice-123",
        remote_port=22,
        private_ip="10.0.0.0",
        max_tunnel_duration=1,
        now=datetime(2020, 1, 1, 1, 1, 1, tzinfo=UTC),
    )
    assert url == (
        f"wss://{HOST}/openTunnel?instanceConnectEndpointId=eice-123&remotePort=22"
        "&privateIpAddress=10.0.0.0&maxTunnelDuration=1"
        "&X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=access_key%2F20200101%2Fus-west-2%2Fec2-instance-connect%2Faws4_request"
        "&X-Amz-Date=20200101T010101Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=3a56740422a5b9aebd22d860b7a30c729e459a6f71a83bc0de3a2b44b7353f28"
    )


def test_temporary_credentials_add_the_security_token_and_omit_absent_duration() -> None:
    url = presign_open_tunnel_url(
        credentials=Credentials("AKID", "secret", "tok/en+="),
        region="us-east-1",
        dns_name="127.0.0.1:8443",
        endpoint_id="eice-1",
        remote_port=22,
        private_ip="10.0.0.5",
        max_tunnel_duration=None,
        scheme="ws",
    )
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    assert (parts.scheme, parts.netloc) == ("ws", "127.0.0.1:8443")
    assert params["X-Amz-Security-Token"] == "tok/en+="
    assert "maxTunnelDuration" not in params
