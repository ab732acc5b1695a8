"""What can be known of a candidate before it trains: the model probe (``probe``: a separate
process that builds a network and measures it), inference latency (``latency``) and zero-cost
proxies (``proxies``)."""
