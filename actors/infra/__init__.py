"""Infrastructure: what every layer leans on and nothing in the contract describes.

The journal, private durable files and the state directory, fault injection, logging,
metrics, certificates and the two inbound HTTP transports (the admission webhook and the
probes/metrics endpoint). Rule: no module here decides anything about containers or
mirrors; it keeps, serves or measures what others decide.
"""
