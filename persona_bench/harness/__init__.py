"""The evaluation machinery every method shares: data, protocol, personas, metrics, runs."""
