"""Work units and executor settings without a cluster: what each notebook needs, derived from its parameters; the
schedule estimate against hand-worked cases; the executor section of profiles and of site files; Slurm's outputs
as the engine reads them.  (The same against a real Slurm: tests/backbone/test_slurm_units.py.)"""

from __future__ import annotations

import pytest

from ci_run import ROOT
from companion.backbone.executor import ExecutorError, ExecutorSettings, phase, resolve_executor
from companion.backbone.profiles import ProfileError, load_profile, parse_profile
from companion.backbone.runtime import resolve_params
from companion.backbone.units import Unit, merge, plan_schedule, unit_provider, units_for


def _u(name, seconds, needs=()):
    return Unit(name, "k", None, "m:f", {"n": name}, tuple(needs), "default", seconds)


def test_the_schedule_of_hand_worked_cases():
    a, b, c = _u("a", 10), _u("b", 4), _u("c", 3)
    # Independent units, longest first: a on one slot; b then c on the other.
    s = plan_schedule([a, b, c], 2)
    assert (s.wall_s, s.serial_s, s.critical_path_s) == (10, 17, 10)
    assert plan_schedule([a, b, c], 1).wall_s == 17
    assert plan_schedule([a, b, c], 3).start_s == {a.id: 0, b.id: 0, c.id: 0}
    # A chain cannot be parallelised: its length is the wall time, whatever the slots.
    x = _u("x", 2)
    y = _u("y", 5, [x.id])
    z = _u("z", 1, [y.id])
    s = plan_schedule([x, y, z, b], 4)
    assert s.wall_s == 8 and s.critical_path == ("x", "y", "z") and s.start_s[z.id] == 7
    # Longest remaining path first: with one free slot, the head of the long chain starts before a longer loner.
    loner = _u("loner", 6)
    s = plan_schedule([x, y, z, loner], 1)
    assert s.start_s[x.id] == 0 and s.wall_s == 14
    # Needs outside the list are taken as built.
    assert plan_schedule([y, z], 2).wall_s == 6


def test_units_of_the_ci_notebooks(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPANION_CACHE", str(tmp_path))  # nothing built: every unit missing, none is built here
    from companion.organism.params import OrganismParams
    from companion.sae.params import ParetoParams, ShrinkageParams
    from companion.sycophancy.params import SycophancyParams

    prof = load_profile("ci")
    per = units_for(
        [
            (nb, resolve_params(cls, prof))
            for nb, cls in (
                ("00", OrganismParams),
                ("01", ParetoParams),
                ("02", ShrinkageParams),
                ("04", SycophancyParams),
            )
        ],
        "ci",
    )
    assert [u.id for u in per["01"]] == [u.id for u in per["02"]], "notebook 02 needs notebook 01's units"
    everything = merge(per)
    kinds = [u.kind for u in everything]
    # One tokenizer; nine distinct ci organisms (ten names, two sharing one spec: the six of the probe and
    # sycophancy experiments and notebook 03's three planted variants); per target a sweep and its evaluation; one
    # scoring per sycophancy model.
    assert (
        kinds.count("tokenizer"),
        kinds.count("organism"),
        kinds.count("sae"),
        kinds.count("sae-eval"),
        kinds.count("sycophancy-scores"),
    ) == (1, 9, 2, 2, 4)
    by_name = {u.name: u for u in everything}
    # syco-p90-medium is the backdoor organism (one spec): one unit, named by the first name that asked for it.
    assert "organism ci/backdoor#0" in by_name and "organism ci/syco-p90-medium#0" not in by_name
    train = by_name["sae-train organism:backdoor@blocks.1.hook_mlp_out"]
    assert train.needs == (by_name["organism ci/backdoor#0"].id,) and train.key  # known before the organism exists
    assert by_name["sae-eval organism:backdoor@blocks.1.hook_mlp_out"].needs == (train.id,)
    # The sycophancy data are not in this cache yet: the scores' keys are not known, so they count as missing.
    assert all(u.key is None for u in everything if u.kind == "sycophancy-scores")
    # Ids are stable and free of the label: the same spec under another name is the same unit.
    again = merge(units_for([("00", resolve_params(OrganismParams, prof))], "ci"))
    assert {u.id for u in again} <= {u.id for u in everything}


def test_a_sweep_in_parts_has_one_unit_per_part_and_the_evaluation_needs_them_all(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPANION_CACHE", str(tmp_path))
    from companion.sae.params import ParetoParams
    from companion.sae.parts import part_ranges

    assert part_ranges(8, 3) == [(0, 3), (3, 6), (6, 8)] and part_ranges(4, 0) == [(0, 4)]
    P = resolve_params(ParetoParams, load_profile("ci")).replace(
        members_per_unit=2, targets=["organism:backdoor@blocks.1.hook_mlp_out"]
    )
    units = units_for([("01", P)], "ci")["01"]
    parts = [u for u in units if u.kind == "sae-part"]
    from companion.sae.experiment import sweep_specs

    assert [u.args["lo"] for u in parts] == list(range(0, len(sweep_specs(P)), 2)) and all(u.key for u in parts)
    assert units[-1].kind == "sae-eval" and units[-1].needs == tuple(u.id for u in parts)
    # members_per_unit changes no cache key: the evaluation (and so the sweep) is keyed as without parts.
    whole = units_for([("01", P.replace(members_per_unit=0))], "ci")["01"]
    assert whole[-1].key == units[-1].key


def _minutes(text: str) -> float:
    """ "1 h 19 min" / "36.0 min" -> minutes."""
    import re

    m = re.fullmatch(r"(?:(\d+) h)? ?(?:([\d.]+) min)?", text.strip())
    assert m and (m[1] or m[2]), text
    return 60 * float(m[1] or 0) + float(m[2] or 0)


@pytest.mark.slow  # the paper profile's whole dry run (every notebook's preflight): ~5 s; make test runs it
def test_paper_dry_run_plans_its_units_on_8_gpus_within_the_list_scheduling_bound(tmp_path, monkeypatch):
    import re

    monkeypatch.setenv("COMPANION_CACHE", str(tmp_path))
    from companion.backbone import runner

    lines = []
    runner.run_notebooks("paper", dry_run=True, executor="slurm", log=lines.append)
    text = "\n".join(lines)
    wall_line = next(line for line in lines if line.startswith("expected wall time"))
    m = re.match(r"expected wall time (.+?) on 8 slot\(s\) \(serial (.+?); critical path (.+?) min: ", wall_line)
    assert m, wall_line
    wall, serial, critical = _minutes(m[1]), _minutes(m[2]), float(m[3])
    # Longest-path-first list scheduling on 8 slots: no faster than the work spread evenly or its longest chain,
    # no slower than Graham's bound (the even spread plus the longest chain); and far below the serial time.
    assert max(serial / 8, critical) - 1 <= wall <= serial / 8 + critical, wall_line
    assert wall < serial / 6, wall_line
    assert "sae-train gelu-1l@blocks.0.mlp.hook_post SAEs 0-1" in text and "sycophancy EleutherAI/pythia-12b" in text
    assert "sae-train: 1 GPU, 8 CPU, 64 GB, 180 min" in text


def test_executor_settings_validate_merge_and_come_from_a_site_file(tmp_path):
    with pytest.raises(ValueError, match="unknown resource class"):
        ExecutorSettings.model_validate({"resources": {"sae-trian": {"gpus_per_node": 1}}})
    with pytest.raises(ProfileError, match="executor.slurm: array_parallelism >= 1"):
        parse_profile("x", "description: d\noffline: true\nfigures_dir: f\nexecutor: {slurm: {array_parallelism: 0}}\n")
    paper = load_profile("paper").executor
    train = paper.resources_for("sae-train")
    assert (train.gpus_per_node, train.cpus_per_task, train.timeout_min) == (1, 8, 180)
    assert paper.resources_for("tokenizer") == paper.resources_for("default")
    assert resolve_executor(paper, None) is paper and resolve_executor(paper, "slurm").kind == "slurm"
    site = tmp_path / "site.yaml"
    site.write_text(
        "executor:\n  kind: slurm\n  slurm: {partition: gpu, account: lab}\n"
        "  resources: {sae-train: {timeout_min: 600}}\n"
    )
    got = resolve_executor(paper, str(site))
    assert (got.kind, got.slurm.partition, got.slurm.account) == ("slurm", "gpu", "lab")
    assert got.resources_for("sae-train").timeout_min == 600 and got.resources_for("sae-train").gpus_per_node == 1
    site.write_text("kind: slurm\nslurm: {partiton: gpu}\n")
    with pytest.raises(ExecutorError, match="executor.slurm.partiton"):
        resolve_executor(paper, str(site))
    with pytest.raises(ExecutorError, match="neither an executor kind"):
        resolve_executor(paper, "slrum")


def test_slurm_states_read_as_the_four_phases():
    assert [
        phase(s)
        for s in (
            "PENDING",
            "REQUEUED",
            "RUNNING",
            "COMPLETING",
            "COMPLETED",
            "FAILED",
            "CANCELLED by 0",
            "TIMEOUT",
            "OUT_OF_MEMORY",
            "NODE_FAIL",
            "",
        )
    ] == ["queued", "queued", "running", "running", "done", "failed", "failed", "failed", "failed", "failed", "queued"]


def test_a_job_traceback_keeps_the_unit_frames_and_sinfo_gres_is_read():
    from companion.backbone.executor import own_frames
    from companion.backbone.slurm import _gres_gpus, _leading_int

    tb = (
        'Traceback (most recent call last):\n  File "/v/submitit/core/submission.py", line 55, in process_job\n'
        "    result = delayed.result()\n             ^^^^^\n"
        '  File "/r/src/companion/backbone/jobs.py", line 39, in run_unit\n    key = fn(**dict(unit.args))\n'
        '  File "/r/src/companion/sae/units.py", line 100, in train\n    return site_sweep(P, target)\n'
        'KeyError: "hook"'
    )
    assert own_frames(tb) == (
        'Traceback (most recent call last):\n  File "/r/src/companion/sae/units.py", line '
        '100, in train\n    return site_sweep(P, target)\nKeyError: "hook"'
    )
    assert [_gres_gpus(g) for g in ("(null)", "gpu:a100:8(S:0-1)", "gpu:4", "gpu:a100:2,gpu:v100:4")] == [0, 8, 4, 4]
    assert [_leading_int(t) for t in ("2", "257000", "64+", "N/A")] == [2, 257000, None, None]


def test_units_are_found_by_the_parameter_class_package():
    from companion.sae import units as sae_units

    assert unit_provider("companion.sae.params:ShrinkageParams") is sae_units.units
    assert unit_provider("smoke_params:SmokeParams") is None
    assert unit_provider("companion.backbone.params:NotebookParams") is None


def test_the_commands_say_what_would_be_submitted_and_each_unit_state(tmp_path, monkeypatch, capsys):
    from companion.cli import main

    monkeypatch.setenv("COMPANION_CACHE", str(tmp_path))
    assert main(["figures", "--profile", "ci", "--only", "01", "--executor", "slurm", "--dry-run", "--force"]) == 0
    out = capsys.readouterr().out
    # The tokenizer, the organism, and per site its sweep and evaluation.
    assert "units: 6 of 6 missing from the cache, would be submitted:" in out
    assert "executor slurm: the cluster's defaults; up to 8 array tasks at once" in out
    assert "expected wall time" in out and "nothing was executed" in out
    assert main(["units", "--profile", "ci", "--only", "01,02"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("profile 'ci': 6 units for 2 notebook(s)") and "6 missing" in out
    assert main(["figures", "--profile", "ci", "--executor", "slurmm", "--dry-run"]) == 2
    assert "neither an executor kind" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.xdist_group("ci_run")
def test_after_the_ci_run_every_unit_its_notebooks_derive_is_in_the_cache(ci_run):
    """The units' keys are the keys the notebooks build under (notebook 05's reseed sweeps included): a unit built by
    an executor is one the notebook then finds, never a second copy under another key."""
    from companion.backbone.plan import discover, load_params_class, params_class_path, read_notebook
    from companion.backbone.units import missing

    prof = load_profile("ci")
    pairs = []
    for nb in discover(ROOT / "notebooks"):
        if not prof.skip_reason(nb.name):
            pairs.append((nb.name, resolve_params(load_params_class(params_class_path(read_notebook(nb), nb)), prof)))
    per = units_for(pairs, "ci")
    assert any("(reseed sae_seed=" in u.name for u in per["05_planted_feature_recovery.ipynb"])
    assert [u.name for u in missing(merge(per))] == []
