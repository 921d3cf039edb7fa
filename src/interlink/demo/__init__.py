"""The live demo behind ``interlink up --demo``: everything in it is real traffic.

A :class:`~interlink.demo.partner.SimulatedPartner` sends Standard-Webhooks-signed booking
webhooks over HTTP to Interlink's own ingest route; Interlink verifies, deduplicates, stores,
routes and delivers them over loopback to :class:`~interlink.demo.receiver.DemoReceiver`
servers that check every signature. :mod:`interlink.demo.runner` wires them together and draws
what happens. The partner and the receivers are plain building blocks, reusable in tests and
benchmarks.
"""
