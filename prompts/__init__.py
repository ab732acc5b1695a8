"""The prompts, as jinja2 templates shipped with the package: ``system.j2``, ``propose.j2``,
``repair.j2``, ``reflect.j2``. A file of the same name in a folder of your own overrides one
(``agent.prompting.Prompts(override_dir=...)``). Read only by ``agent``."""

from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent
