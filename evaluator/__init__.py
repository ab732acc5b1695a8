"""The evaluation side: what a candidate is and how it is evaluated, measured and stopped.

``spaces`` (what candidates look like: schemas, sampling, mutation, validation, capabilities),
``recipe`` (the training recipe a spec carries), ``tasks`` and ``data`` (what to design for),
``tables`` (benchmark tables read from files), ``models`` (the networks specs describe),
``pools`` (where candidates are evaluated: tables, curve replays, sandboxed training, Ray),
``job`` (what runs inside the sandbox: worker, protocol, trainer), ``measure`` (the probe,
latency, zero-cost proxies), ``early_stop`` (forecasts, the stopping rule, successive halving),
``objectives``, ``records`` and ``errors``. Never imports ``agent``; docs/architecture.md has the map.
"""
