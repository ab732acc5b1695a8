"""What can be known of a candidate before it trains: the model probe (``probe``: a separate
process that builds a network and measures it), inference latency (``latency``) and zero-cost
proxies (``proxies``).

``ProxyName`` / ``PROXY_NAMES`` declare the zero-cost proxies there are, here where importing
them costs nothing (``proxies`` imports torch): settings and flags check names against them.
"""

from typing import Literal, get_args

ProxyName = Literal["synflow", "naswot", "jacob_cov", "grad_norm", "snip"]
PROXY_NAMES: tuple[str, ...] = get_args(ProxyName)

__all__ = ["PROXY_NAMES", "ProxyName"]
