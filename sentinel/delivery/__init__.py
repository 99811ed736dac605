"""The durable outbox and the workers that deliver from it (and the fallback a
training process uses when no daemon is alive)."""
