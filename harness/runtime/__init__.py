"""What every stage runs on: the cache and its locks, atomic writes, devices, worker
processes, progress bars and size bounds."""
