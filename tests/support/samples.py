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


# --- images and volumes (Docker 20.10, API 1.41) ----------------------------------------

#: ``GET /images/{ref}/json`` of an image made by ``docker import -c 'LABEL a=b'`` of a
#: busybox root file system and tagged twice (``docker tag``).
IMAGE_INSPECT: dict[str, Any] = {
    "Id": "sha256:5808ca04f9ae9c28a5bc9e61b06d7e039a0afa88fd3a2032b904095d58f7bcbd",
    "RepoTags": ["probe-p:v1", "probe-p:v2"],
    "RepoDigests": [],
    "Parent": "",
    "Comment": "Imported from -",
    "Created": "2026-12-04T12:40:49.488604466Z",
    "Container": "",
    "ContainerConfig": {
        "Hostname": "",
        "Domainname": "",
        "User": "",
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": None,
        "Cmd": None,
        "Image": "",
        "Volumes": None,
        "WorkingDir": "",
        "Entrypoint": None,
        "OnBuild": None,
        "Labels": None,
    },
    "DockerVersion": "20.10.24+dfsg1",
    "Author": "",
    "Config": {
        "Hostname": "",
        "Domainname": "",
        "User": "",
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": None,
        "Cmd": None,
        "Image": "",
        "Volumes": None,
        "WorkingDir": "",
        "Entrypoint": None,
        "OnBuild": None,
        "Labels": {"a": "b"},
    },
    "Architecture": "amd64",
    "Os": "linux",
    "Size": 1984172,
    "VirtualSize": 1984172,
    "GraphDriver": {
        "Data": {"MergedDir": "/var/lib/docker/overlay2/797496d9/merged"},
        "Name": "overlay2",
    },
    "RootFS": {
        "Type": "layers",
        "Layers": ["sha256:797496d9ac9a4322b91223776903093db21a9f8c82fa29421c14cb0415c4901d"],
    },
    "Metadata": {"LastTagTime": "2026-12-04T12:40:49.512345678Z"},
}

#: ``GET /images/json?all=1`` with a tagged image and a dangling parent of a committed
#: child (API 1.41 lists the placeholders ``<none>:<none>``/``<none>@<none>``).
IMAGE_LIST: list[dict[str, Any]] = [
    {
        "Containers": -1,
        "Created": 1796388049,
        "Id": "sha256:e9aad69f5449485b1ce28aed972d43cf891adc3282556ffc8291b7ef194491b0",
        "Labels": {"a": "b"},
        "ParentId": "sha256:5808ca04f9ae9c28a5bc9e61b06d7e039a0afa88fd3a2032b904095d58f7bcbd",
        "RepoDigests": None,
        "RepoTags": ["probe-child:v1"],
        "SharedSize": -1,
        "Size": 1984172,
        "VirtualSize": 1984172,
    },
    {
        "Containers": -1,
        "Created": 1796388049,
        "Id": "sha256:5808ca04f9ae9c28a5bc9e61b06d7e039a0afa88fd3a2032b904095d58f7bcbd",
        "Labels": {"a": "b"},
        "ParentId": "",
        "RepoDigests": ["<none>@<none>"],
        "RepoTags": ["<none>:<none>"],
        "SharedSize": -1,
        "Size": 1984172,
        "VirtualSize": 1984172,
    },
]

#: ``GET /volumes/{name}`` of ``docker volume create My_Vol_Ume``.
VOLUME_INSPECT: dict[str, Any] = {
    "CreatedAt": "2026-12-04T12:40:32Z",
    "Driver": "local",
    "Labels": None,
    "Mountpoint": "/var/lib/docker/volumes/My_Vol_Ume/_data",
    "Name": "My_Vol_Ume",
    "Options": None,
    "Scope": "local",
}
