"""`agent report`: a run's history as a self-contained HTML page with figures, and a Markdown summary.

``data`` gathers what the report shows from the history (reads only), ``figures`` draws it
with matplotlib into PNG bytes, ``render`` writes the HTML and the Markdown, and ``files``
puts them where they belong.
"""

from agent.reporting.files import write_report

__all__ = ["write_report"]
