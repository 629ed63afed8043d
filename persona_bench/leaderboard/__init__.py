"""persona-bench leaderboard."""
