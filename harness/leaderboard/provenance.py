"""What data and settings a page's runs used, in the lines under its title: the toy
worlds and test seeds, each dataset with a short fingerprint (the pretext clips, the
downstream VOC folder), and every setting the runs changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.leaderboard import identity as board_identity
from harness.leaderboard.cells import DASH, num_int
from harness.leaderboard.groups import Group, world_suffix
from harness.leaderboard.prose import say

#: the template of this module's prose
PROSE = "provenance.md.j2"


def seeds_line(group: Group) -> str:
    """Which toy worlds and test seeds the group's runs used."""
    runs = [run for row in group.rows for run in row.runs]
    worlds = sorted({r.world_seed for r in runs if r.world_seed is not None})
    tests = sorted({r.test_seed for r in runs if r.test_seed is not None})
    missing = sum(r.test_seed is None for r in runs)
    return say(PROSE, "seeds", worlds=", ".join(map(str, worlds)) or DASH,
               tests=", ".join(map(str, tests)) or DASH, missing=missing)


def _fp(fingerprint: str | None) -> str:
    return f"`{(fingerprint or '?')[:8]}`"


def _count(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def _each(values: set) -> str:
    """``1,000`` when every dataset has that count, else the counts joined."""
    return " / ".join(_count(v) for v in sorted(values, key=lambda v: (v is None, v or 0)))


def datasets_line(group: Group) -> str:
    """The data the group's runs used, each dataset with a short fingerprint: the pretext
    clips and the downstream VOC folder (for the toy world, one of each per world)."""
    runs = [run for row in group.rows for run in row.runs]
    toy = board_identity.is_toy(group.key.downstream)
    per_world = sorted({(r.world_seed, r.world) for r in runs},
                       key=lambda w: (w[0] is None, w[0] or 0, w[1]))
    clips: dict[str, dict[str, Any]] = {}
    for r in runs:
        if r.pretext is not None:
            entry = clips.setdefault(str(r.pretext.get("fingerprint")),
                                     {**r.pretext, "worlds": set(), "audio": ""})
            entry["worlds"].add(r.world_seed)
            entry["audio"] = world_suffix(r).removeprefix(" · ")
    random = any(r.init == "random" for r in runs)
    if not clips:
        pretext = say(PROSE, "no_clips")
    elif toy and all(c.get("kind") == "toy" for c in clips.values()):
        def worlds_of(c: dict[str, Any]) -> list:
            return sorted(c["worlds"], key=lambda w: (w is None, w or 0))

        names = ", ".join(
            f"world{'s' if len(c['worlds']) > 1 else ''} "
            f"{', '.join(num_int(w) for w in worlds_of(c))} {_fp(fp)}"
            + (f" ({c['audio']})" if c["audio"] else "")
            for fp, c in sorted(clips.items(), key=lambda i: (
                [(w is None, w or 0) for w in worlds_of(i[1])], i[1]["audio"], i[0])))
        one = all(len(c["worlds"]) == 1 for c in clips.values())
        pretext = say(PROSE, "toy_clips", one_per_world=one, names=names,
                      presets=any(c["audio"] for c in clips.values()),
                      n_clips=_each({c.get("n_clips") for c in clips.values()}), random=random)
    else:
        sets = [f"`{c.get('kind')}` dataset {_fp(fp)} ({_count(c.get('n_clips'))} clips"
                + (f", folder `{Path(c['path']).name}`" if c.get("path") else "") + ")"
                for fp, c in sorted(clips.items())]
        pretext = say(PROSE, "clips", sets=sets, random=random)
    first = {w: next(r for r in runs if r.world == w) for _, w in per_world}
    sizes = {first[w].splits for _, w in per_world}
    splits = say(PROSE, "splits", trainval=_each({s[0] for s in sizes}),
                 test=_each({s[1] for s in sizes}))
    if toy:
        names = ", ".join(f"world {num_int(seed)} {_fp(w)}" for seed, w in per_world)
        down = say(PROSE, "toy_voc", names=names, splits=splits)
    else:
        folders = ", ".join(
            f"{_fp(w)}" + (f", folder `{Path(first[w].downstream_path).name}`"
                           if first[w].downstream_path else "") for _, w in per_world)
        if group.key.downstream == board_identity.VOC07:
            down = say(PROSE, "voc07", folders=folders, splits=splits)
        else:
            tv, test = board_identity.VOC2007_SPLITS
            down = say(PROSE, "voc_folder", folders=folders, splits=splits,
                       name=group.key.downstream, trainval=tv, test=test)
    return f"{pretext} {down}"


def machines_line(group: Group) -> str:
    """Which kinds of machine the group's runs were made on (CPU model and torch threads,
    or GPU), by row when there is more than one: a seed gives the same figures only on the
    kind it ran on, so runs of different kinds differ by floating-point rounding too."""
    kinds: dict[str, list[str]] = {}
    for row in group.rows:
        for machine in sorted({r.machine for r in row.runs}):
            kinds.setdefault(machine, []).append(row.label)
    if len(kinds) < 2:
        return say(PROSE, "one_machine", machine=next(iter(kinds), "?"))
    most = max(sorted(kinds), key=lambda m: len(kinds[m]))
    others = [f"{machine} ({'; '.join(labels)})" for machine, labels in sorted(kinds.items())
              if machine != most]
    return say(PROSE, "machines", most=most, others=others)


def overrides_lines(group: Group) -> list[str]:
    """Every setting the group's runs changed (:func:`board_identity.overrides`): the
    profile values their options replaced and evaluator parameters off their defaults."""
    by_row = [(row.label, row.first.overrides) for row in group.rows]
    what = say(PROSE, "what_is_overridden")
    if not any(o for _, o in by_row):
        return [say(PROSE, "no_overrides", what=what), ""]
    if len({o for _, o in by_row}) == 1:
        items = ", ".join(f"`{x}`" for x in by_row[0][1])
        return [say(PROSE, "same_overrides", what=what, items=items), ""]
    lines = [say(PROSE, "overrides_by_row", what=what), ""]
    lines += [f"- {label}: {', '.join(f'`{x}`' for x in o) or 'none'}" for label, o in by_row]
    return lines + [""]
