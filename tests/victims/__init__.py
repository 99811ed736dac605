"""Victim scripts: training stand-ins that tests start, signal and kill."""
