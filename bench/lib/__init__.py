"""What the benchmark entry scripts (bench/*.py) share; nothing here is run on its own by make bench."""
