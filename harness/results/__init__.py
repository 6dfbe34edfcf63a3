"""Results: one JSON record per run and what reads it.

:mod:`.records` builds a record (and offers the whole record API in one import);
:mod:`.schema` says what a record may hold, :mod:`.store` writes and reads them,
:mod:`.naming` names runs, :mod:`.environment` says where a run ran, :mod:`.metrics`
reads every schema's metrics, :mod:`.scores` the per-image test scores, :mod:`.verify`
recomputes every figure, :mod:`.protocol` is the protocol lock, :mod:`.archive` the
archive of superseded records and :mod:`.label_truth` the label scores of records made
before runs measured them.
"""
