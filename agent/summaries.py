"""The result objects of the CLI and the Python API; their JSON is part of docs/contracts.md."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)


class BestCandidate(_Out):
    candidate_id: str
    spec: dict[str, Any]
    val_accuracy: float = Field(description="search signal (validation), fraction")
    test_accuracy: float | None = Field(description="final report of the chosen candidate, fraction")
    test_source: str | None = Field(default=None, description="what test_accuracy is (which table, how many epochs)")
    test_accuracy_std: float | None = Field(default=None, description="std over the final retraining seeds (training tasks)")
    seeds: list[int] | None = Field(default=None, description="seeds of the final retraining (training tasks)")
    val_accuracy_mean: float | None = Field(default=None, description="mean validation accuracy over its search "
                                                                       "evaluation and rechecks, when rechecked")
    val_seeds: int | None = Field(default=None, description="validation runs behind val_accuracy_mean")


class SearchSummary(_Out):
    run_id: str
    status: str
    task: str
    space: str
    proposer: str
    seed: int
    budget: int
    evaluations: int
    counts: dict[str, int]
    duplicates_skipped: int
    proposals: int
    stop_reason: str | None
    best: BestCandidate | None
    top: list[dict[str, Any]]
    wall_seconds: float
    home: str | None
    warnings: list[str] = Field(default_factory=list)
    llm: dict[str, Any] | None = Field(default=None, description="LLM accounting (calls, schema_valid_rate, valid_rate, "
                                                                   "repairs, tokens_in, tokens_out, seconds, cost)")
    operators: dict[str, Any] | None = Field(default=None, description="portfolio: per operator proposals, outcomes, "
                                                                         "mean reward, best, seconds, dollars, share")
    epochs_trained: int | None = Field(default=None, description="training epochs spent on search candidates "
                                                                  "(training tasks; None for table lookups)")
    epochs_saved: int | None = Field(default=None, description="epochs early stopping did not spend: each stopped "
                                                                "candidate's remaining epochs")
    early_stop: dict[str, Any] | None = Field(default=None, description="--early-stop forecast|both: forecasts, stopped, "
                                                                          "and the audits' live error")
    asha: dict[str, Any] | None = Field(default=None, description="--early-stop asha|both: eta, per rung how many "
                                                                    "reached it and were promoted, pruned")
    objectives: list[str] = Field(default_factory=lambda: ["accuracy"], description="what the search optimised")
    rechecks: dict[str, Any] | None = Field(default=None, description="rechecked leaders: the validation accuracy of "
                                                                        "each recheck seed, and the mean with the search's")
    pareto: list[dict[str, Any]] | None = Field(default=None, description="multi-objective: the Pareto front of the ok "
                                                                           "candidates, each with its objective values")
    pretraining: dict[str, Any] | None = Field(default=None, description="measurements before training: how many were "
                                                                           "measured, rejected by a constraint, screened out")
    proxies: dict[str, Any] | None = Field(default=None, description="per zero-cost proxy the workers scored: its Spearman "
                                                                      "correlation with the ok candidates' validation accuracy")
    surrogate: dict[str, Any] | None = Field(default=None, description="portfolio with the surrogate: pool size, seconds "
                                             "spent fitting and choosing, proxy_evidence (proxy, proposals scored, seconds), "
                                             "priors (the runs used)")


class RunRow(_Out):
    run_id: str
    task: str
    status: str
    created: str
    evaluations: int
    best_val_accuracy: float | None
