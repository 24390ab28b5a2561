"""Events out: the outbox fed with each state change, and the sender that POSTs it (issue 18)."""
