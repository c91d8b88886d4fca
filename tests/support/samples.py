"""Realistic Docker inspect payloads for tests (Docker 20.10 ``GET /containers/{id}/json``).

``INSPECT_RUNNING`` is a running busybox container started with
``docker run -d --name web -p 8080:80 -p 443 --expose 53/udp -l app=web busybox sleep inf``.
Do not mutate it; use :func:`inspect_with` for variants.
"""

from __future__ import annotations

import copy
from typing import Any

CONTAINER_ID = "3f4c1a2b9d8e7f60112233445566778899aabbccddeeff00112233445566778a"
IMAGE_ID = "sha256:beae173ccac6ad749f76713cf4440fe3d21d1043fe616dfbe30775815d1d0f6a"

INSPECT_RUNNING: dict[str, Any] = {
    "Id": CONTAINER_ID,
    "Created": "2025-11-22T00:34:07.123456789Z",
    "Path": "sleep",
    "Args": ["inf"],
    "State": {
        "Status": "running",
        "Running": True,
        "Paused": False,
        "Restarting": False,
        "OOMKilled": False,
        "Dead": False,
        "Pid": 4242,
        "ExitCode": 0,
        "Error": "",
        "StartedAt": "2025-11-22T00:34:08.987654321Z",
        "FinishedAt": "0001-01-01T00:00:00Z",
    },
    "Image": IMAGE_ID,
    "ResolvConfPath": f"/var/lib/docker/containers/{CONTAINER_ID}/resolv.conf",
    "HostnamePath": f"/var/lib/docker/containers/{CONTAINER_ID}/hostname",
    "HostsPath": f"/var/lib/docker/containers/{CONTAINER_ID}/hosts",
    "LogPath": f"/var/lib/docker/containers/{CONTAINER_ID}/{CONTAINER_ID}-json.log",
    "Name": "/web",
    "RestartCount": 0,
    "Driver": "overlay2",
    "Platform": "linux",
    "MountLabel": "",
    "ProcessLabel": "",
    "AppArmorProfile": "docker-default",
    "ExecIDs": None,
    "HostConfig": {
        "Binds": None,
        "NetworkMode": "default",
        "PortBindings": {
            "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
            "443/tcp": [{"HostIp": "", "HostPort": ""}],
        },
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": False,
    },
    "Mounts": [],
    "Config": {
        "Hostname": "3f4c1a2b9d8e",
        "Domainname": "",
        "User": "",
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "ExposedPorts": {"443/tcp": {}, "53/udp": {}, "80/tcp": {}},
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sleep", "inf"],
        "Image": "busybox",
        "Volumes": None,
        "WorkingDir": "",
        "Entrypoint": None,
        "OnBuild": None,
        "Labels": {"app": "web", "org.example.tier": "frontend"},
    },
    "NetworkSettings": {
        "Bridge": "",
        "SandboxID": "9a8b7c6d5e4f30211223344556677889900aabbccddeeff0011223344556677",
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        # Docker returns dual-stack bindings in either order; IPv6 first here on purpose.
        "Ports": {
            "80/tcp": [
                {"HostIp": "::", "HostPort": "8080"},
                {"HostIp": "0.0.0.0", "HostPort": "8080"},
            ],
            "443/tcp": [
                {"HostIp": "0.0.0.0", "HostPort": "32768"},
                {"HostIp": "::", "HostPort": "32768"},
            ],
            "53/udp": None,
        },
        "SandboxKey": "/var/run/docker/netns/9a8b7c6d5e4f",
        "Gateway": "172.17.0.1",
        "IPAddress": "172.17.0.2",
        "IPPrefixLen": 16,
        "MacAddress": "02:42:ac:11:00:02",
        "Networks": {
            "bridge": {
                "IPAMConfig": None,
                "Links": None,
                "Aliases": None,
                "NetworkID": "5f6e7d8c9b0a",
                "EndpointID": "0a9b8c7d6e5f",
                "Gateway": "172.17.0.1",
                "IPAddress": "172.17.0.2",
                "IPPrefixLen": 16,
                "MacAddress": "02:42:ac:11:00:02",
            }
        },
    },
}


def inspect_with(**state_overrides: Any) -> dict[str, Any]:
    """Deep copy of :data:`INSPECT_RUNNING` with ``State`` keys replaced.

    Example: ``inspect_with(Status="exited", Running=False, Pid=0, ExitCode=137,
    FinishedAt="2025-11-22T01:00:00.5Z")``.
    """
    inspect = copy.deepcopy(INSPECT_RUNNING)
    inspect["State"].update(state_overrides)
    return inspect
