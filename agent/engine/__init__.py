"""One search, from settings to summary: ``runner`` (the entry point, ``run_search``) over
``setup`` (task, space, pool, monitors), ``llm_wiring`` (the proposer and what an LLM adds),
``graph`` and ``state`` (the langgraph search loop), ``proposing`` (proposals made beside the
evaluations), ``screen``, ``early_stop`` and ``halving`` (the run's side of measuring and
stopping), ``resume`` (continuing a run from its history), ``final_report``, ``summary``,
``evaluate_one`` (`agent eval`) and ``crash`` (crash points for tests)."""
