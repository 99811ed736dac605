"""The files both sides share, one format per module: the spool's run directories,
live.bin, the daemon's liveness and state files, mutes, evidence dumps; and the
safe JSON I/O and field rules they are read with. Standard library only."""
