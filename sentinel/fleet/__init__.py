"""How many hosts are watched at once: Prometheus metrics, healthchecks.io pings,
the status page, and the fleet keys of the configuration."""
