"""``harness run``: the stages of one run, in order, each cached under a key of its inputs."""
