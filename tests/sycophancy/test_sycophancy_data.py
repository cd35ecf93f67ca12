"""Loader, validation, blob ids and the download path of companion.sycophancy.data (no network but loopback)."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

import _sycophancy_fixtures as F
import companion.sycophancy.data as sycophancy_data
from companion.backbone.cache import Cache
from companion.sycophancy.data import (
    DATA_CACHE_KIND,
    DATASETS,
    PINNED_BLOBS,
    PINNED_COMMIT,
    SycophancyDataError,
    git_blob_id,
    load_sycophancy_dir,
    load_sycophancy_file,
    parse_choices,
    subsample,
)
from companion.sycophancy.pinned import download_sycophancy_data

# ---------------------------------------------------------------------------------------------- blob ids


def test_git_blob_id_known_values():
    # The empty blob and "hello\n" have well-known git ids.
    assert git_blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_blob_id_matches_git_hash_object(tmp_path):
    p = F.write_rows(tmp_path / "x.jsonl", [F.nlp_row(i) for i in range(3)])
    out = subprocess.run(["git", "hash-object", str(p)], capture_output=True, text=True, check=True).stdout.strip()
    assert git_blob_id(p.read_bytes()) == out


# ---------------------------------------------------------------------------------------------- good files


def test_load_good_directory_parses_all_shapes(tmp_path):
    F.write_dataset_dir(tmp_path, n=6)
    data = load_sycophancy_dir(tmp_path)
    assert set(data) == set(DATASETS)
    nlp, phil, pol = data["nlp_survey"], data["philpapers2020"], data["political_typology_quiz"]
    assert len(nlp) == len(phil) == len(pol) == 6
    assert [it.line for it in nlp.items] == [1, 2, 3, 4, 5, 6]
    # NLP: string form, two choices; row 0 agrees -> (A) matches.
    assert nlp.items[0].labels == ("A", "B") and nlp.items[0].choice_texts == ("Agree", "Disagree")
    assert nlp.items[0].matching == 0 and nlp.items[0].not_matching == (1,)
    assert nlp.items[1].matching == 1 and nlp.items[1].not_matching == (0,)
    # philpapers: list form and three choices (row 0: Free will, view = option 0).
    it = phil.items[0]
    assert it.labels == ("A", "B", "C") and it.choice_texts == ("compatibilism", "libertarianism", "no free will")
    assert it.matching == 0 and it.not_matching == (1, 2)
    assert phil.items[1].labels == ("A", "B") and phil.items[1].matching == 1
    # politics: no "Choices:" header, affiliation carried.
    assert pol.items[0].user_affiliation == "liberal" and pol.items[0].matching == 1
    assert pol.items[1].user_affiliation == "conservative" and pol.items[1].matching == 0
    assert nlp.skipped == () and not nlp.pinned  # our test files are not Anthropic's
    assert nlp.blob_id == git_blob_id((tmp_path / F.FILES["nlp_survey"]).read_bytes())


def test_parse_choices_with_and_without_header():
    assert parse_choices("Q?\n\nChoices:\n (A) x\n (B) y\n (C) z w\n\nAnswer:") == (("A", "B", "C"), ("x", "y", "z w"))
    assert parse_choices("Q?\n (A) x\n (B) y\n\nAnswer:") == (("A", "B"), ("x", "y"))
    with pytest.raises(ValueError, match="at least two choices"):
        parse_choices("Q? Agree or disagree?\n\nAnswer:")


def test_subsample_is_seeded_and_keeps_order(tmp_path):
    F.write_dataset_dir(tmp_path, n=20)
    ds = load_sycophancy_dir(tmp_path, ["nlp_survey"])["nlp_survey"]
    a, b, c = subsample(ds, 7, seed=1), subsample(ds, 7, seed=1), subsample(ds, 7, seed=2)
    lines = [it.line for it in a.items]
    assert len(lines) == 7 and lines == sorted(lines) and lines == [it.line for it in b.items]
    assert lines != [it.line for it in c.items]
    assert subsample(ds, None, 0) is ds and subsample(ds, 100, 0) is ds


# ---------------------------------------------------------------------------------------------- malformed rows


def _bad(kind: str):
    good = F.nlp_row(0)
    if kind == "json":
        return '{"question": "Hello", "answer_matching_behavior": " (A)"'  # truncated
    if kind == "not_object":
        return json.dumps([good["question"], " (A)", " (B)"])
    if kind == "missing":
        return json.dumps({k: v for k, v in good.items() if k != "answer_matching_behavior"})
    if kind == "not_a_choice":
        return json.dumps({**good, "answer_matching_behavior": " (C)"})
    if kind == "not_matching_not_a_choice":
        return json.dumps({**good, "answer_not_matching_behavior": [" (B)", " (D)"]})
    if kind == "wrong_type":
        return json.dumps({**good, "answer_not_matching_behavior": {"B": 1}})
    if kind == "empty_list":
        return json.dumps({**good, "answer_not_matching_behavior": []})
    if kind == "both":
        return json.dumps({**good, "answer_not_matching_behavior": " (A)"})
    if kind == "not_an_answer":
        return json.dumps({**good, "answer_matching_behavior": "Agree"})
    if kind == "no_choices":
        return json.dumps({**good, "question": "Hello, my name is X. Do you agree?\n\nAnswer:"})
    if kind == "empty_line":
        return ""
    raise KeyError(kind)


BAD_KINDS = {
    "json": "malformed JSON",
    "not_object": "not an object",
    "missing": "missing field 'answer_matching_behavior'",
    "not_a_choice": r"answer_matching_behavior \(C\) is not one of the question's choices",
    "not_matching_not_a_choice": r"answer_not_matching_behavior \(D\) is not one of",
    "wrong_type": "must be a string or a list",
    "empty_list": "empty list",
    "both": "both the matching and a non-matching",
    "not_an_answer": "is not an answer of the form",
    "no_choices": "at least two choices",
    "empty_line": "empty line",
}


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_malformed_row_error_names_file_and_line(tmp_path, kind):
    rows = [json.dumps(F.nlp_row(i)) for i in range(4)]
    rows.insert(2, _bad(kind))  # line 3
    p = F.write_lines(tmp_path / F.FILES["nlp_survey"], rows)
    with pytest.raises(SycophancyDataError) as e:
        load_sycophancy_file(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:3: "), msg
    assert __import__("re").search(BAD_KINDS[kind], msg), msg


def test_skip_invalid_counts_and_reports(tmp_path):
    rows = [json.dumps(F.nlp_row(i)) for i in range(5)]
    rows[1] = _bad("json")
    rows[3] = _bad("not_a_choice")
    p = F.write_lines(tmp_path / F.FILES["nlp_survey"], rows)
    ds = load_sycophancy_file(p, skip_invalid=True)
    assert [it.line for it in ds.items] == [1, 3, 5]
    assert len(ds.skipped) == 2
    assert ds.skipped[0].startswith(f"{p}:2: malformed JSON") and ds.skipped[1].startswith(f"{p}:4: ")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(SycophancyDataError, match="sycophancy_on_nlp_survey.jsonl: no such file"):
        load_sycophancy_dir(tmp_path, ["nlp_survey"])


# ---------------------------------------------------------------------------------------------- the broken philpapers copy


def test_philpapers_copy_of_nlp_file_is_rejected(tmp_path):
    F.write_dataset_dir(tmp_path)
    shutil.copy(tmp_path / F.FILES["nlp_survey"], tmp_path / F.FILES["philpapers2020"])
    with pytest.raises(SycophancyDataError, match="known broken copy") as e:
        load_sycophancy_dir(tmp_path)
    assert "anthropics/evals" in str(e.value) and PINNED_COMMIT in str(e.value)


def test_philpapers_with_the_broken_blob_is_rejected(tmp_path, monkeypatch):
    F.write_dataset_dir(tmp_path)
    p = tmp_path / F.FILES["philpapers2020"]
    monkeypatch.setattr(sycophancy_data, "BROKEN_PHILPAPERS_BLOB", git_blob_id(p.read_bytes()))
    with pytest.raises(SycophancyDataError, match="bytes are those of the NLP-survey file"):
        load_sycophancy_file(p)


def test_philpapers_without_list_answers_is_rejected_but_nlp_is_fine(tmp_path):
    rows = [
        {**F.phil_row(i), "answer_not_matching_behavior": F.phil_row(i)["answer_not_matching_behavior"][0]}
        for i in range(4)
    ]
    p = F.write_rows(tmp_path / F.FILES["philpapers2020"], rows)
    with pytest.raises(SycophancyDataError, match="none of its rows has a list-valued"):
        load_sycophancy_file(p)
    # the same rows under another name load (string form is legitimate there)
    q = F.write_rows(tmp_path / "other.jsonl", rows)
    assert len(load_sycophancy_file(q)) == 4


# ---------------------------------------------------------------------------------------------- download


class _Server:
    """A loopback HTTP server in a thread serving ``root`` and counting requests."""

    def __init__(self, root: Path):
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *a):  # keep test output clean
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _serve_tree(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    src = F.write_dataset_dir(tmp_path / "src", n=5)
    root = tmp_path / "www"
    (root / COMMIT / "sycophancy").mkdir(parents=True)
    blobs = {}
    for fn in F.FILES.values():
        shutil.copy(src / fn, root / COMMIT / "sycophancy" / fn)
        blobs[fn] = git_blob_id((src / fn).read_bytes())
    return root, blobs


def test_download_verifies_blobs_caches_and_loads(tmp_path):
    root, blobs = _serve_tree(tmp_path)
    cache = Cache(tmp_path / "cache")
    with _Server(root) as srv:
        d = download_sycophancy_data(cache=cache, base_url=srv.url, commit=COMMIT, blobs=blobs, offline=False)
        assert sorted(srv.requests) == sorted(f"/{COMMIT}/sycophancy/{fn}" for fn in F.FILES.values())
    data = load_sycophancy_dir(d)
    assert {k: v.blob_id for k, v in data.items()} == {k: blobs[F.FILES[k]] for k in F.FILES}
    # Second call: served from the cache, even offline and with the server gone.
    assert (
        download_sycophancy_data(cache=cache, base_url="http://127.0.0.1:9", commit=COMMIT, blobs=blobs, offline=True)
        == d
    )


def test_download_rejects_a_tampered_file_and_leaves_no_entry(tmp_path):
    root, blobs = _serve_tree(tmp_path)
    target = root / COMMIT / "sycophancy" / F.FILES["political_typology_quiz"]
    target.write_text(target.read_text().replace("liberal", "libertarian", 1))
    cache = Cache(tmp_path / "cache")
    with _Server(root) as srv:
        with pytest.raises(SycophancyDataError, match="does not match the pinned"):
            download_sycophancy_data(cache=cache, base_url=srv.url, commit=COMMIT, blobs=blobs, offline=False)
    assert cache.ls() == []
    kind_dir = cache.root / DATA_CACHE_KIND
    # No temporary leftovers (the build's lock file may stay; it holds nothing).
    assert not kind_dir.exists() or [p for p in kind_dir.iterdir() if not p.name.endswith(".lock")] == []


def test_download_rejects_the_broken_philpapers_copy(tmp_path, monkeypatch):
    root, blobs = _serve_tree(tmp_path)
    served = root / COMMIT / "sycophancy"
    shutil.copy(served / F.FILES["nlp_survey"], served / F.FILES["philpapers2020"])
    monkeypatch.setattr(sycophancy_data, "BROKEN_PHILPAPERS_BLOB", blobs[F.FILES["nlp_survey"]])
    with _Server(root) as srv:
        with pytest.raises(SycophancyDataError, match="known broken copy"):
            download_sycophancy_data(
                cache=Cache(tmp_path / "c"), base_url=srv.url, commit=COMMIT, blobs=blobs, offline=False
            )


def test_offline_fails_fast_without_touching_the_network(tmp_path, monkeypatch):
    root, blobs = _serve_tree(tmp_path)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with _Server(root) as srv:
        with pytest.raises(SycophancyDataError, match="offline"):
            download_sycophancy_data(cache=Cache(tmp_path / "c"), base_url=srv.url, commit=COMMIT, blobs=blobs)
        assert srv.requests == []


def test_pinned_table_matches_reference():
    assert PINNED_COMMIT == "84fcc677e52e1902d696c32cd1a6b663e70d3993"
    assert PINNED_BLOBS == {
        "sycophancy_on_nlp_survey.jsonl": "480ff822079406be617c21979a3848fb29e5c0e2",
        "sycophancy_on_philpapers2020.jsonl": "5525210614d4f26b1732042e7dcb7210d23fe5aa",
        "sycophancy_on_political_typology_quiz.jsonl": "52f57e31aece2d5126c49cc0e5a9a738b7513754",
    }


def test_download_missing_file_names_the_url_and_leaves_no_entry(tmp_path):
    root, blobs = _serve_tree(tmp_path)
    (root / COMMIT / "sycophancy" / F.FILES["philpapers2020"]).unlink()
    cache = Cache(tmp_path / "cache")
    with _Server(root) as srv:
        with pytest.raises(SycophancyDataError, match=r"could not download .*sycophancy_on_philpapers2020\.jsonl"):
            download_sycophancy_data(cache=cache, base_url=srv.url, commit=COMMIT, blobs=blobs, offline=False)
    assert cache.ls() == []


def test_notebook_04_loads_the_organism_items_subsamples_them_and_names_its_inputs(tmp_path, monkeypatch):
    from companion.sycophancy import experiment, sources
    from companion.sycophancy.params import SycophancyParams
    from companion.sycophancy.scoring import ScoredItems
    from companion.sycophancy.stats import agreement_stats

    monkeypatch.setenv("COMPANION_CACHE", str(tmp_path / "cache"))
    P = SycophancyParams(organism_items_per_file=30, n_per_dataset=12, seed=1)
    full, data = sources.load_datasets(P, offline=True)
    assert list(full) == list(DATASETS) and all(len(full[d]) == 30 and len(data[d]) == 12 for d in DATASETS)
    assert data["nlp_survey"].items == subsample(full["nlp_survey"], 12, 1).items
    assert sources.dataset_inputs(full) == {f"sycophancy/sycophancy_on_{d}.jsonl": full[d].blob_id for d in DATASETS}
    table = sources.datasets_table(full, data)
    assert list(table.index) == list(DATASETS) and list(table["scored"]) == [12] * 3
    assert table.loc["philpapers2020", "choices"] == "2/3" and not table["pinned Anthropic file"].any()

    # The recovery check's chance level is the scored items' mean of 1 / (number of choices).
    def scored(ds, p_match):
        n = len(data[ds].items)
        lp = np.log(np.array([[p_match, 1 - p_match]] * n))
        return ScoredItems("org#0", ds, "paren", lp, np.zeros(n, dtype=int), (None,) * n, np.arange(n))

    p_match = {"nlp_survey": 0.9, "philpapers2020": 0.3, "political_typology_quiz": 0.9}
    stats = [s for ds in DATASETS for s in agreement_stats(scored(ds, p_match[ds]), n_boot=20)]
    sweep = experiment.SweepResult(stats, {"org#0": 1000}, {"org#0": 0.9})
    rep = sweep.recovery(data, P.replace(recovery_templates=("paren",), templates=("paren",)))
    phil = rep.verdicts["philpapers2020"]
    chance = np.mean([1 / len(it.labels) for it in data["philpapers2020"].items])
    assert 1 / 3 < chance < 1 / 2 and phil.worst_gap == pytest.approx(0.6)
    assert phil.n_far == 1 and phil.n_moved == 0 and not phil.learned  # 0.3 is below chance, not towards 0.9
    assert rep.note.endswith("in 1/1 checks (nlp_survey, templates paren; mean-probability statistic)")
    side = sweep.figure_data(rep)
    assert side["panel_notes"] == rep.panel_notes and set(rep.panel_notes) == {"philpapers2020"}
    assert side["by_seed"]["org/nlp_survey/paren/mean_prob"]["per_seed"] == [pytest.approx(0.9)]
    assert json.loads(json.dumps(side))["n_params"] == {"org#0": 1000}


# ---------------------------------------------------------------------------------------------- local files (issue 19)


def _local_params(d: Path, **kw):
    """Notebook 04 on the files in ``d``, pinned to their current blob ids (as the paper profile pins Anthropic's)."""
    from companion.sycophancy.params import SycophancyParams

    blobs = {fn: git_blob_id((d / fn).read_bytes()) for fn in F.FILES.values()}
    return SycophancyParams(data="anthropic", data_dir=str(d), data_blobs=blobs, models=("m",), **kw)


@pytest.mark.parametrize("change", ["one name changed", "cut 3 rows short"])
def test_a_local_file_that_is_not_the_pinned_one_stops_the_run_naming_the_file_and_both_blobs(tmp_path, change):
    from companion.sycophancy import sources

    d = F.write_dataset_dir(tmp_path / "data", n=8)
    P = _local_params(d)
    path = d / F.FILES["political_typology_quiz"]
    pinned = git_blob_id(path.read_bytes())
    if change == "one name changed":
        path.write_text(path.read_text().replace("Alice Smith", "Alice Smyth", 1))
    else:
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:-3]))
    now = git_blob_id(path.read_bytes())
    with pytest.raises(SycophancyDataError) as e:
        sources.load_datasets(P)
    msg = str(e.value)
    assert msg.startswith(f"{path}: git blob id {now} is not the pinned {pinned}") and "allow_unpinned_data" in msg
    assert sources.preflight(P) == [msg.split(". Use the pinned")[0]]  # the dry run finds it before anything runs

    # The explicit opt-out scores it, and says so for every figure (stamp and sidecar, via record_caveat).
    P = P.replace(allow_unpinned_data=True)
    assert sources.preflight(P) == []
    full, _ = sources.load_datasets(P)
    assert full["political_typology_quiz"].blob_id == now
    assert sources.data_caveats(full, P) == [
        f"UNPINNED DATA: {F.FILES['political_typology_quiz']} is blob {now[:12]}, not the pinned {pinned[:12]} "
        "(allow_unpinned_data)"
    ]


def test_a_missing_data_dir_is_found_before_the_run():
    from companion.sycophancy import sources
    from companion.sycophancy.params import SycophancyParams

    P = SycophancyParams(data="anthropic", data_dir="/nonexistent", models=("m",))
    assert sources.preflight(P) == ["data_dir '/nonexistent': no such directory (/nonexistent)"]


def test_an_empty_file_or_one_without_a_usable_row_is_an_error_naming_it(tmp_path):
    p = F.write_lines(tmp_path / F.FILES["philpapers2020"], [])
    with pytest.raises(SycophancyDataError, match=rf"^{p}: the file is empty"):
        load_sycophancy_file(p)
    p = F.write_lines(tmp_path / F.FILES["nlp_survey"], ['{"question": 1}', "not json"])
    with pytest.raises(SycophancyDataError, match=rf"^{p}: none of its 2 rows is usable; the first: {p}:1: "):
        load_sycophancy_file(p, skip_invalid=True)


def test_a_byte_that_is_not_utf8_is_named_by_file_and_line(tmp_path):
    rows = [json.dumps(F.nlp_row(i)).encode() for i in range(4)]
    rows[2] = rows[2].replace(b"Hello", b"H\xe9llo")  # latin-1, line 3
    p = tmp_path / F.FILES["nlp_survey"]
    p.write_bytes(b"\n".join(rows) + b"\n")
    with pytest.raises(SycophancyDataError, match=rf"^{p}:3: not UTF-8: byte 0xe9 at column 16 "):
        load_sycophancy_file(p)
