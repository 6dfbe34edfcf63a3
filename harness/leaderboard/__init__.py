"""The leaderboard: rows and groups, statistics, tables, plots and pages from result records."""
