"""The ``code`` space: a candidate is a PyTorch model file, changed by search/replace edits.

Modules: ``source`` (reading a file: parsing and static checks), ``edits`` (changing its text:
mutations and search/replace edits), ``space`` (the schemas and ``CodeSpace``), ``seeds`` (the
seed model file of each task).

A candidate file defines ``build_model(input_shape, num_classes) -> torch.nn.Module``
(``input_shape`` is (C, H, W)); the sandboxed worker imports it, trains the module with the
file's ``TRAINING`` recipe and reports predictions, from which the trusted side computes every
metric. **This module never imports or runs a candidate**: everything here is ``ast`` and text.

A spec is ``{"source": <file text>, "training": {<Training fields>}}``. ``training`` is derived
from the file's ``TRAINING = {...}`` literal (the layers space's ``Training`` defaults where it
is absent); an incoming ``training`` is ignored and recomputed, so the file is the whole truth.

Static checks (``validate``), each a SpecError naming the line and column and the fix: size
(``MAX_CHARS``, ``MAX_LINES``), syntax, a top-level ``def build_model`` with two positional
parameters, a top level of only docstrings, imports, definitions and assignments (plus
``if __name__ == "__main__":``), imports of installed modules (``importlib.util.find_spec`` on
the top-level name, which runs nothing: a quality check that catches invented packages, not a
security boundary; the sandbox is that), a literal ``TRAINING`` valid for ``Training`` and a
literal ``CHOICES``.

Knobs are UPPER_CASE module-level constants whose value is an int, float, str or bool literal
(``WIDTH = 32``); ``CHOICES = {"KNOB": [values]}`` names the values a knob may take. ``mutate``
changes one knob or one ``TRAINING`` key by splicing a new literal over the old one's exact
span, leaving every other byte of the file as it was:

    in CHOICES    another listed value
    bool          toggled
    int           kernel-like (KERNEL in the name, or odd 3..7): +-2, staying odd and >= 1;
                  >= 4: x2 (up to 1024) or //2; 0..3: +-1, staying >= 1; negative: never
    float         0 or [0.05, 1): +-0.1 within [0, 0.9] (dropout-like);
                  any other (tiny, >= 1, negative): x2 or /2 (scale-like: eps, lr)
    str           only through CHOICES
    TRAINING      lr x2 or /2 within its bounds; weight_decay, label_smoothing, batch_size,
                  optimizer, schedule, augmentation: another allowed value

Proposals from an LLM (``llm_schema`` = :class:`CodeProposal`) are up to ``MAX_EDITS``
search/replace edits of the shown file, or a whole new ``source``; ``apply_proposal`` turns one
into a spec (exact match first, then a line-wise match that ignores each line's surrounding
whitespace and re-indents the replacement).

``canonical_key`` hashes the module's ``ast.unparse`` without docstrings: comments, formatting
and docstrings do not make a new candidate.
"""

from evaluator.spaces.code.source import MAX_CHARS, MAX_LINES, parse_source
from evaluator.spaces.code.space import CodeProposal, CodeSpace, CodeSpec, Edit

__all__ = ["CodeProposal", "CodeSpace", "CodeSpec", "Edit", "MAX_CHARS", "MAX_LINES", "parse_source"]
