"""What the kernel and the environment say about a process: identity, PID namespace,
container, account, the launcher's job. Both sides use it; standard library only."""
