"""Leaderboards, their top-N and ranks: the merge levels and the read side."""
