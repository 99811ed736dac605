"""What runs inside the training process: ``watch``, the recorder, the SwanLab
callbacks, ``sentinel run``. Imports the standard library only until SwanLab or a
channel is touched; never imports the daemon, the fleet or the command line."""
