"""``agent export``: one candidate as a standalone deliverable for use outside archagent.

The export folder gets ``model.py`` (torch and the standard library only: ``build_model()``,
``INPUT_SHAPE``, ``NUM_CLASSES``, ``RECIPE``, a results card, ``python model.py`` as a smoke
test), ``recipe.json``, and where a final retraining kept them, ``weights.pt``; code-mode
candidates also get their own file, ``candidate_model.py``, unchanged; ``--onnx`` adds
``model.onnx``.

One job per module:

- ``facts``         what the history knows about the candidate: task shape, results, recipe, weights
- ``template``      what every model.py shares: the card, the constants, loading weights, ``__main__``
- ``layers_source`` / ``nb201_source`` / ``code_source``   the network's source, per space
- ``weights``       kept weights are untrusted data: loaded tensors-only and checked against the network
- ``onnx_file``     ``model.onnx``, checked with onnx.checker
- ``candidate``     the checks, the files and the ``--json`` object
"""

from __future__ import annotations

from agent.exporter.candidate import EXPORT_FILES, export_candidate

__all__ = ["EXPORT_FILES", "export_candidate"]
