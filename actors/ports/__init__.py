"""Ports: the only code that talks to the Docker engine or the Kubernetes apiserver.

Rule: every Docker or Kubernetes call of the service goes through :mod:`.docker_port` or
:mod:`.kube_port`, and every exception that leaves a port is a
:class:`~actors.ports.port_errors.PortError` with a retry decision. Nothing outside this
package imports the docker SDK or speaks HTTP to the apiserver.
"""
