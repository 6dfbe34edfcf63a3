"""``leaderboards/`` regenerated from result records: tables (markdown) and plots (PNG).

Records are grouped by what makes numbers comparable: the downstream dataset (its name,
``toy-voc``, ``voc07`` for a folder with PASCAL VOC2007's splits or ``voc-<fingerprint>``
for any other, and its fingerprint; for the toy VOC its recipe, so that the toy worlds of
one recipe share a table), the evaluation protocol's preset and the run profile. Within
a table, runs on different pretext clip datasets are different rows (the toy world's clips
excepted: each world has its own, told apart by its VOC); see :mod:`harness.leaderboard.identity`.
Each page names its datasets (short fingerprints) and every setting its runs overrode.
Each group gets a page with

- a Table-1 style table: Head and All mAP (the frozen protocol's evaluators that train a
  classifier on the frozen trunk and that fine-tune every layer:
  :func:`harness.leaderboard.rows.table1_evaluators`), the mean over runs with a 95%
  bootstrap interval over runs and test images (:mod:`harness.leaderboard.bootstrap`),
  the number of runs, the share of the random-to-supervised distance each row recovers,
  ``(row - random) / (supervised - random)``, and the paired difference to the random-init
  row, against the random-init and supervised rows of the same backbone and evaluators
  (both on the worlds the compared rows share); over several toy worlds, one such table
  per world set, with intervals that also resample worlds
  (:mod:`harness.leaderboard.presentation`, which also declares the index page's headline);
- a per-world table of Head and All when the runs come from several toy worlds;
- Table-2 style per-class AP tables (Head and All);
- plots when the records hold a sweep: mAP against k per backbone, and comparisons of
  representations and of backbones at equal k, with the 95% intervals as error bars.

Runs whose configurations differ only in seeds (``config.seed``, ``world_seed`` and any
``seed`` / ``random_state`` parameter) and device are one row. If a row has two runs with
the same world and seed, the newer one counts. With a frozen protocol
(:mod:`harness.results.protocol`) only the records made under it are shown; the archive's
records (:mod:`harness.results.archive`) get a page of their own. The paper's published
rows are shown as "reported" in their own tables (and beside measured rows only for real
VOC07, where the dataset is the same); toy and VOC07 numbers are never in one table. An
interval that does not contain its own point (AP's resampling bias on a small test set)
carries a mark its page explains. Everything here is a pure function of the records, so
the output is byte-for-byte reproducible and ``--check`` can detect staleness.

The package, in the order the data goes: :mod:`~harness.leaderboard.rows` (records ->
runs, rows, table keys, labels), :mod:`~harness.leaderboard.groups` (a table's rows and
their statistics: means, intervals, paired differences, recovered shares),
:mod:`~harness.leaderboard.bootstrap` (the resampling), :mod:`~harness.leaderboard.presentation`
(toy tables over world sets, the declared headline), :mod:`~harness.leaderboard.cells` and
:mod:`~harness.leaderboard.tables` (markdown), :mod:`~harness.leaderboard.plot_data` and
:mod:`~harness.leaderboard.plots` (plots), :mod:`~harness.leaderboard.provenance`,
:mod:`~harness.leaderboard.notes`, :mod:`~harness.leaderboard.reported`,
:mod:`~harness.leaderboard.pages` and :mod:`~harness.leaderboard.index` (the pages, their
prose in ``templates/`` read by :mod:`~harness.leaderboard.prose`), this module (the whole
board) and :mod:`~harness.leaderboard.writing` (the files and ``--check``).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from harness.leaderboard import plot_data
from harness.leaderboard.groups import group_records
from harness.leaderboard.index import archive_page, index_page
from harness.leaderboard.pages import generic_page, group_page
from harness.leaderboard.rows import table1_evaluators
from harness.leaderboard.writing import ARCHIVE_PAGE, INDEX, Leaderboard


def build_leaderboard(records: Iterable[Mapping[str, Any]], *,
                      scores: Mapping[str, Mapping[str, Any]] | None = None,
                      archived: Iterable[Mapping[str, Any]] = (),
                      frozen=None,
                      truths: Mapping[str, Mapping[str, Any]] | None = None) -> Leaderboard:
    """The whole leaderboard (pure: same inputs, same result).

    ``records`` are the results folder's records and ``scores`` their per-image test
    scores by run id; ``archived`` the archive's records; ``frozen`` the frozen protocol
    (:class:`harness.results.protocol.FrozenProtocol`, or None: every record is shown);
    ``truths`` the label-truth scores of records that do not hold their own, by run id.
    """
    records = list(records)
    live = [r for r in records if frozen is None or frozen.is_current(r)]
    stale = sorted(r["run_id"] for r in records if frozen is not None and not frozen.is_current(r))
    groups = group_records(live, scores, table1_evaluators(frozen), truths)
    markdown, all_plots = {}, {}
    for group in groups:
        if group.key.evaluator:
            plots_here = plot_data.evaluator_plots(group)
            all_plots.update(plots_here)
            markdown[f"{group.key.slug}.md"] = generic_page(group, sorted(plots_here))
            continue
        plots_here = plot_data.group_plots(group)
        all_plots.update(plots_here)
        markdown[f"{group.key.slug}.md"] = group_page(group, sorted(plots_here))
    archived = list(archived)
    markdown[INDEX] = index_page(groups, frozen, len(archived), stale)
    if archived:
        markdown[ARCHIVE_PAGE] = archive_page(archived, frozen)
    problems = [f"results record {run_id}: not under the frozen protocol; run `harness "
                f"leaderboard --archive-superseded`" for run_id in stale]
    return Leaderboard(markdown, all_plots, problems)
