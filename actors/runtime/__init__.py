"""Runtime: the pykka actors and the threads they own.

Rule: actors talk by ``tell``; no actor blocks on another actor's answer; every Docker or
Kubernetes call is made through a port inside :meth:`~actors.runtime._base.JournaledActor.effect`
so it is journaled. The router owns the per-object actors; readers turn the Docker event
stream and the Kubernetes watch into messages; the supervisor (``supervisor.py``) owns
the readers, the router and the event writer.
"""
