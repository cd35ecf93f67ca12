"""The package's architecture as tests: import scanning and closures, no import cycles, modules of one size, one
scoring path.  (The same scan decides notebook re-runs and cache keys, so it is tested on planted packages.)"""
import re
from pathlib import Path

from companion.backbone import codegraph

SRC = Path(codegraph.PKG_DIR)


def _package(tmp_path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "companion"
    for rel, text in files.items():
        p = pkg / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return pkg


def test_import_scan_reads_every_import_form():
    src = ("%load_ext autoreload\nimport companion.backbone.figures\nfrom companion.backbone import runtime\n"
           "from companion.backbone.cache import x\ndef f():\n    from companion.sae import metrics as sm\n")
    assert codegraph.imports_of(src) >= {"companion.backbone.figures", "companion.backbone.runtime",
                                         "companion.backbone.cache", "companion.sae.metrics"}
    # Relative imports resolve against the importing module's package.
    assert "companion.sae.metrics" in codegraph.imports_of("from .metrics import l0", "companion.sae.training")
    assert "companion.sae.metrics" in codegraph.imports_of("from . import metrics", "companion.sae", is_package=True)


def test_closure_is_transitive_includes_lazy_imports_and_parent_packages(tmp_path):
    pkg = _package(tmp_path, {
        "__init__.py": "", "a/__init__.py": "", "b/__init__.py": "",
        "a/top.py": "from companion.a import mid\n",
        "a/mid.py": "def f():\n    from companion.b.leaf import g\n",
        "b/leaf.py": "def g():\n    pass\n",
        "b/unused.py": "",
    })
    closure = codegraph.module_closure(["companion.a.top"], pkg)
    assert set(closure) == {"companion", "companion.a", "companion.a.top", "companion.a.mid", "companion.b",
                            "companion.b.leaf"}


def test_cycle_detector_finds_a_planted_cycle(tmp_path):
    pkg = _package(tmp_path, {
        "__init__.py": "", "x.py": "from companion.y import f\n", "y.py": "def f():\n    from companion.x import g\n",
        "z.py": "from companion.x import g\n",
    })
    assert codegraph.find_cycles(codegraph.import_graph(pkg)) == [["companion.x", "companion.y"]]


def test_the_package_has_no_import_cycles():
    cycles = codegraph.find_cycles(codegraph.import_graph())
    assert cycles == [], f"import cycles (function-level imports included): {cycles}"


def test_subpackage_inits_import_nothing():
    # Package __init__ files hold only a docstring: importing a module never runs another module's code.
    for init in SRC.rglob("__init__.py"):
        assert not codegraph.imports_of(init.read_text()), f"{init} imports; keep package __init__ files empty"


def test_modules_are_of_one_concept_size():
    big = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 420}
    assert not big, f"modules over ~400 lines (split them by concept): {big}"


def test_model_inputs_are_padded_and_batched_in_the_models_layer_only():
    # Right-padded scoring batches (companion.models.scoring) and left-padded generation batches
    # (companion.models.generation) are built in companion.models only: no other padding loop.
    pattern = re.compile(r"torch\.full\(\s*\(|pad_token_id\(|def _pad_id|right_padded\(|attention_mask=")
    allowed = {"models/scoring.py", "models/generation.py"}
    hits = [rel for p in SRC.rglob("*.py")
            if (rel := p.relative_to(SRC).as_posix()) not in allowed and pattern.search(p.read_text())]
    assert hits == [], f"padding/batching of model inputs outside companion.models: {hits}"
