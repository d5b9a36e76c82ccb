"""What the instance's AMI says about its login user and EC2 Instance Connect (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from access.preflight.report import Check, ok, warning


@dataclass(frozen=True)
class Distro:
    label: str
    pattern: re.Pattern[str]
    users: tuple[str, ...]  # the first is the one to suggest


# Order matters: the first match wins ("bitnami ... debian" is Bitnami).
DISTROS = (
    Distro("Windows", re.compile(r"windows", re.I), ("Administrator",)),
    Distro("Bitnami", re.compile(r"bitnami", re.I), ("bitnami",)),
    Distro("Amazon Linux", re.compile(r"amzn|al20\d\d|amazon linux", re.I), ("ec2-user",)),
    Distro("Ubuntu", re.compile(r"ubuntu", re.I), ("ubuntu",)),
    Distro("Debian", re.compile(r"debian", re.I), ("admin",)),
    Distro("RHEL", re.compile(r"rhel|red ?hat", re.I), ("ec2-user", "root")),
    Distro("Fedora", re.compile(r"fedora", re.I), ("fedora", "ec2-user")),
    Distro("CentOS", re.compile(r"centos", re.I), ("centos", "ec2-user")),
    Distro("Rocky Linux", re.compile(r"rocky", re.I), ("rocky",)),
    Distro("AlmaLinux", re.compile(r"alma", re.I), ("ec2-user",)),
    Distro("SUSE", re.compile(r"suse|sles", re.I), ("ec2-user", "root")),
    Distro("Oracle Linux", re.compile(r"oracle|\bol\d", re.I), ("ec2-user",)),
    Distro("FreeBSD", re.compile(r"freebsd", re.I), ("ec2-user",)),
)
# AMIs known to ship the ec2-instance-connect package.
INSTANCE_CONNECT_AMIS = (
    re.compile(r"amzn2-|al2023-|amazon linux (2|2023)\b", re.I),
    re.compile(r"ubuntu.*\b(2[0-9]|[3-9][0-9])\.(04|10)\b|ubuntu.*\b(focal|jammy|noble|oracular)\b", re.I),
)


def image_text(image: dict[str, Any] | None) -> str:
    if not image:
        return ""
    parts = (image.get("Name"), image.get("Description"), image.get("PlatformDetails"))
    text = " ".join(str(p) for p in parts if p)
    if str(image.get("Platform", "")).lower() == "windows":
        text += " windows"
    return text


def distro_of(image: dict[str, Any] | None) -> Distro | None:
    text = image_text(image)
    return next((d for d in DISTROS if d.pattern.search(text)), None)


def _image_label(image_id: str, image: dict[str, Any] | None) -> str:
    name = (image or {}).get("Name")
    return f"{image_id} ({name})" if name else image_id


def os_user(image_id: str, image: dict[str, Any] | None, user: str) -> Check:
    """The OS user is the one this AMI's distribution creates."""
    name = "os-user"
    label = _image_label(image_id, image)
    if image is None:
        return warning(
            name,
            f"AMI {image_id} is not visible (deregistered or not shared); cannot tell whether "
            f"{user!r} exists",
            "check the login user on the instance, then request with --user <name>",
        )
    distro = distro_of(image)
    if distro is None:
        return warning(
            name,
            f"cannot tell the login user of AMI {label}; make sure {user!r} exists",
            "check the AMI's documentation for its login user, then request with --user <name>",
        )
    if user in distro.users:
        return ok(name, f"{user!r} is the login user of {distro.label} AMI {label}")
    return warning(
        name,
        f"{distro.label} AMI {label} usually logs in as {distro.users[0]!r}, not {user!r}",
        f"request with --user {distro.users[0]}",
    )


def instance_connect(image_id: str, image: dict[str, Any] | None, port: int) -> Check:
    """SendSSHPublicKey only works where the AMI runs the ec2-instance-connect agent."""
    name = "instance-connect"
    if port == 3389:
        return ok(name, "RDP (3389): SendSSHPublicKey is not needed")
    text = image_text(image)
    label = _image_label(image_id, image)
    if any(p.search(text) for p in INSTANCE_CONNECT_AMIS):
        return ok(name, f"AMI {label} ships EC2 Instance Connect")
    return warning(
        name,
        f"AMI {label} is not known to ship EC2 Instance Connect: SendSSHPublicKey may not work, "
        "the requester may need their own key pair",
        "install it on the instance (`sudo yum install ec2-instance-connect` or "
        "`sudo apt-get install ec2-instance-connect`), or connect with your own key",
    )
