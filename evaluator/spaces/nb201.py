"""The NAS-Bench-201 cell space: 4 nodes, 6 edges, 5 operations per edge (15,625 cells).

An edge ``edge_i_j`` carries node ``j``'s output into node ``i``. The canonical text form is
NAS-Bench-201's arch string, e.g.
``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|``
"""

from __future__ import annotations

import random
from typing import Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from evaluator.errors import SpecError, did_you_mean
from evaluator.spaces.base import SearchSpace

Op = Literal["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
OPS: tuple[str, ...] = get_args(Op)
# (to_node, from_node) in arch-string order.
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
EDGE_FIELDS: tuple[str, ...] = tuple(f"edge_{i}_{j}" for i, j in EDGES)
NUM_CELLS = len(OPS) ** len(EDGES)


class Nb201Cell(BaseModel):
    """One NAS-Bench-201 cell: the operation on each of the six edges."""

    model_config = ConfigDict(extra="forbid")

    edge_1_0: Op = Field(description="op from node 0 (cell input) to node 1")
    edge_2_0: Op = Field(description="op from node 0 to node 2")
    edge_2_1: Op = Field(description="op from node 1 to node 2")
    edge_3_0: Op = Field(description="op from node 0 to node 3 (cell output)")
    edge_3_1: Op = Field(description="op from node 1 to node 3")
    edge_3_2: Op = Field(description="op from node 2 to node 3")


def arch_string(spec: dict[str, Any]) -> str:
    """The NAS-Bench-201 arch string of a validated spec."""
    groups = []
    for node in (1, 2, 3):
        ops = [f"{spec[f'edge_{node}_{j}']}~{j}" for j in range(node)]
        groups.append("|" + "|".join(ops) + "|")
    return "+".join(groups)


def parse_arch(arch: str) -> dict[str, Any]:
    """Parse an arch string into a spec; the error names the node, the edge and the fix."""
    if not isinstance(arch, str):
        raise SpecError(
            f"arch must be a string, got {type(arch).__name__} {arch!r}",
            hint="pass the NAS-Bench-201 arch string, e.g. |nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
            field="arch",
        )
    if not arch.strip():
        raise SpecError(
            f"arch string {arch!r} is empty",
            hint="write it like |nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
        )
    nodes = arch.strip().split("+")
    if len(nodes) != 3:
        raise SpecError(
            f"arch string {arch!r} has {len(nodes)} node group(s) separated by '+', expected 3",
            hint="a NAS-Bench-201 cell has 3 node groups: |op~0|+|op~0|op~1|+|op~0|op~1|op~2|",
        )
    spec: dict[str, Any] = {}
    for node, group in enumerate(nodes, start=1):
        parts = [p for p in group.strip().strip("|").split("|")]
        if len(parts) != node:
            raise SpecError(
                f"arch string {arch!r}: node {node} has {len(parts)} edge(s), expected {node}",
                hint=f"node {node} takes one op from each earlier node: "
                + "|".join(f"op~{j}" for j in range(node)),
            )
        for j, part in enumerate(parts):
            op, sep, src = part.partition("~")
            if sep != "~" or src != str(j):
                raise SpecError(
                    f"arch string {arch!r}: node {node} edge {j + 1} is {part!r}, expected 'OP~{j}'",
                    hint=f"edges into node {node} are listed in order ~0 .. ~{node - 1}",
                    field=f"edge_{node}_{j}",
                )
            if op not in OPS:
                raise SpecError(
                    f"arch string {arch!r}: unknown op {op!r} on edge {node}<-{j}{did_you_mean(op, OPS)}",
                    hint="ops are " + ", ".join(OPS),
                    field=f"edge_{node}_{j}",
                )
            spec[f"edge_{node}_{j}"] = op
    return spec


class Nb201Space(SearchSpace):
    """The cell space; ``cells`` (arch strings) restricts it to a subset, such as the cells a
    curves file holds: other cells are then rejected, sampled and mutated children stay inside."""

    name: ClassVar[str] = "nb201"
    proposal_schema: ClassVar[type[BaseModel]] = Nb201Cell
    # synflow ranks the cells at Spearman 0.745 (CIFAR-10 final validation, bench/proxies.py) for about 0.08 s a cell
    # on one core; as the surrogate's evidence it lifts every budget and data set
    # (bench/search_nb201.py: CIFAR-10 93.03 -> 94.20 at 10 evaluations, 94.05 -> 94.37 at 50)
    evidence_proxy: ClassVar[str | None] = "synflow"

    def __init__(self, *args: Any, cells: frozenset[str] | None = None, cells_source: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cells = frozenset(cells) if cells is not None else None
        self._sorted = sorted(self.cells) if self.cells is not None else None
        self.cells_source = cells_source

    def describe(self) -> str:
        text = (
            "NAS-Bench-201 cell: a DAG of 4 nodes; node 0 is the cell input, node 3 the output. "
            "Each of the 6 edges edge_i_j (node j -> node i, j < i) carries one op: "
            + ", ".join(OPS)
            + ". A node sums its incoming edges; 'none' removes an edge. "
            f"{NUM_CELLS} cells in all."
        )
        if self.cells is not None:
            text += (f" This search is restricted to the {len(self.cells)} cells of {self.cells_source or 'a given list'};"
                     " any other cell is rejected.")
        return text

    def validate(self, spec: Any) -> dict[str, Any]:
        if isinstance(spec, str):
            spec = parse_arch(spec)
        elif isinstance(spec, dict) and set(spec) == {"arch"}:
            spec = parse_arch(spec["arch"])
        else:
            spec = super().validate(spec)
        if self.cells is not None and arch_string(spec) not in self.cells:
            raise SpecError(f"cell {arch_string(spec)} is not among the {len(self.cells)} cells of "
                            f"{self.cells_source or 'this search'}",
                            hint="propose one of those cells: the search is restricted to them")
        return spec

    def sample(self, rng: random.Random) -> dict[str, Any]:
        if self._sorted is not None:
            return parse_arch(rng.choice(self._sorted))
        return {field: rng.choice(OPS) for field in EDGE_FIELDS}

    def mutate(self, spec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        if self.cells is None:
            child = dict(spec)
            field = rng.choice(EDGE_FIELDS)
            child[field] = rng.choice([op for op in OPS if op != spec[field]])
            return child
        # Inside a subset: the nearest cells that differ (fewest edges changed), one at random.
        here = arch_string(spec)
        distance = {a: sum(x != y for x, y in zip(a.split("|"), here.split("|"))) for a in self._sorted if a != here}
        if not distance:
            raise SpecError(f"the search is restricted to one cell ({here}); there is nothing to mutate it into",
                            hint="give a curves file with at least 2 cells")
        nearest = min(distance.values())
        return parse_arch(rng.choice([a for a, d in distance.items() if d == nearest]))

    def neighbours(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        """The 24 cells one edge's op away (inside ``cells`` when the space is restricted)."""
        out = [dict(spec, **{field: op}) for field in EDGE_FIELDS for op in OPS if op != spec[field]]
        return [c for c in out if arch_string(c) in self.cells] if self.cells is not None else out

    def canonical_key(self, spec: dict[str, Any]) -> str:
        return arch_string(spec)

    def extra_fields(self, spec: dict[str, Any]) -> dict[str, Any]:
        return {"arch": arch_string(spec)}

    def encode(self, spec: dict[str, Any]) -> dict[str, float]:
        """Each edge's op, how many edges carry each op, and the path encoding (encoding module)."""
        out = {f"{field}={spec[field]}": 1.0 for field in EDGE_FIELDS}
        for op in OPS:
            out[f"count:{op}"] = float(sum(spec[field] == op for field in EDGE_FIELDS))
        for path in _paths(spec):
            name = "path:" + ">".join(path)
            out[name] = out.get(name, 0.0) + 1.0
        return out


def _paths(spec: dict[str, Any], node: int = 3) -> list[tuple[str, ...]]:
    """The sequences of ops along every path from node 0 to ``node`` ('none' edges included:
    a path through one carries nothing, and the encoding says so by its name)."""
    if node == 0:
        return [()]
    return [prefix + (spec[f"edge_{node}_{j}"],) for j in range(node) for prefix in _paths(spec, j)]
