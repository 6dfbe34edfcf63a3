"""``harness run`` and ``harness sweep``: the stages of one run, in order, each cached under a
key of its inputs.

- :mod:`.config`: what a run is (:class:`~.config.RunConfig`, its defaults from
  :mod:`harness.profiles`) and the parameters each evaluator gets;
- :mod:`.checks`: what a run is refused for before its first stage;
- :mod:`.data_stage`, :mod:`.labels_stage`, :mod:`.pretext_stage`, :mod:`.eval_stage`:
  the stages, in the order a run does them;
- :mod:`.run`: one run, top to bottom, ending in its result record;
- :mod:`.sweep`: a grid of runs; :mod:`.loggers`: the logger plugins that watch a run.
"""
