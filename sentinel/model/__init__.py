"""The alert model: the endings table, alerts, the run state machine, and the words
every channel shares. Standard library only."""
