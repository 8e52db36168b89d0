"""quantrac application: the command line and the processes it composes."""
