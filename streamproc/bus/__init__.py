"""Sources of prompt records and sinks for results and dead letters."""
