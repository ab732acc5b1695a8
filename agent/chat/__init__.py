"""`agent chat`: a refinement session about one run (agent.chat.session), answered from the
history (agent.chat.facts)."""
