"""The leaderboard: rows and groups, statistics, tables, plots and pages from result records
(:mod:`harness.leaderboard.board` says what a board holds and which module does what)."""
