"""The leaderboard: results store, markdown tables (tabulate) and plots (matplotlib)."""
from .render import write_leaderboard  # noqa: F401
