"""The package's architecture as tests: import scanning and closures, no import cycles, modules of one size, one
scoring path, dependencies pointing one way.  (The same scan decides notebook re-runs and cache keys, so it is tested on planted packages.)"""

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
    src = (
        "%load_ext autoreload\nimport companion.backbone.figures\nfrom companion.backbone import runtime\n"
        "from companion.backbone.cache import x\ndef f():\n    from companion.sae import metrics as sm\n"
    )
    assert codegraph.imports_of(src) >= {
        "companion.backbone.figures",
        "companion.backbone.runtime",
        "companion.backbone.cache",
        "companion.sae.metrics",
    }
    # Relative imports resolve against the importing module's package.
    assert "companion.sae.metrics" in codegraph.imports_of("from .metrics import l0", "companion.sae.training")
    assert "companion.sae.metrics" in codegraph.imports_of("from . import metrics", "companion.sae", is_package=True)


def test_closure_is_transitive_includes_lazy_imports_and_parent_packages(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a/__init__.py": "",
            "b/__init__.py": "",
            "a/top.py": "from companion.a import mid\n",
            "a/mid.py": "def f():\n    from companion.b.leaf import g\n",
            "b/leaf.py": "def g():\n    pass\n",
            "b/unused.py": "",
        },
    )
    closure = codegraph.module_closure(["companion.a.top"], pkg)
    assert set(closure) == {
        "companion",
        "companion.a",
        "companion.a.top",
        "companion.a.mid",
        "companion.b",
        "companion.b.leaf",
    }


def test_cycle_detector_finds_a_planted_cycle(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "",
            "x.py": "from companion.y import f\n",
            "y.py": "def f():\n    from companion.x import g\n",
            "z.py": "from companion.x import g\n",
        },
    )
    assert codegraph.find_cycles(codegraph.import_graph(pkg)) == [["companion.x", "companion.y"]]


def test_the_package_has_no_import_cycles():
    cycles = codegraph.find_cycles(codegraph.import_graph())
    assert cycles == [], f"import cycles (function-level imports included): {cycles}"


def test_layer_check_flags_every_wrong_way_import_in_a_planted_package(tmp_path):
    # Each kind of violation once, one of them inside a function body; the right-way imports pass.
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "",
            "base/__init__.py": "",
            "mid/__init__.py": "",
            "r1/__init__.py": "",
            "r2/__init__.py": "",
            "base/ok.py": "import os\n",
            "base/up.py": "def f():\n    from companion.mid.m import g\n",  # reaches up, lazily
            "mid/m.py": "from companion.base import ok\ndef g():\n    pass\n",  # down: fine
            "r1/a.py": "from companion.mid.m import g\nfrom companion.r2 import b\n",  # down fine; sideways not
            "r2/b.py": "from . import c\n",
            "r2/c.py": "",  # within its part: fine
            "stray.py": "",
        },
    )
    layers = (("companion",), ("companion.base",), ("companion.mid",), ("companion.r1", "companion.r2"))
    found = {(a, b) for a, b, _ in codegraph.layer_violations(codegraph.import_graph(pkg), layers)}
    assert found == {
        ("companion.base.up", "companion.mid.m"),
        ("companion.r1.a", "companion.r2"),
        ("companion.r1.a", "companion.r2.b"),
        ("companion.stray", "companion.stray"),
    }


def test_layer_check_would_flag_the_backbone_reaching_up():
    # The edge this rule was written for (the command's doctor subcommand, once in companion.backbone.cli), and a
    # result package importing another, added to the real graph.
    graph = codegraph.import_graph()
    graph.setdefault("companion.backbone.runner", set()).add("companion.models.doctor")
    graph.setdefault("companion.sae.metrics", set()).add("companion.probes.metrics")
    graph.setdefault("companion.organism.build", set()).add("companion.readme")
    found = {(a, b) for a, b, _ in codegraph.layer_violations(graph)}
    assert found == {
        ("companion.backbone.runner", "companion.models.doctor"),
        ("companion.sae.metrics", "companion.probes.metrics"),
        ("companion.organism.build", "companion.readme"),
    }


def test_dependencies_point_one_way():
    # README "Layout": backbone <- models <- organism <- sae | probes | sycophancy (not one another) <- readme <- cli.
    # Function-level imports count; every module must sit in a layer.
    bad = codegraph.layer_violations(codegraph.import_graph())
    assert bad == [], "imports pointing the wrong way:\n" + "\n".join(f"{a} -> {b}: {why}" for a, b, why in bad)


def test_subpackage_inits_import_nothing():
    # Package __init__ files hold only a docstring: importing a module never runs another module's code.
    for init in SRC.rglob("__init__.py"):
        assert not codegraph.imports_of(init.read_text()), f"{init} imports; keep package __init__ files empty"


# Modules still over the bound, each being split by concept; remove a name once its module is split.  No other
# module may join this list.
OVERSIZED: set[str] = set()


def test_modules_are_of_one_concept_size():
    # ~400 lines of one concept, with a little room for ruff format (which puts one argument per line where a call
    # does not fit) before a module must be split.
    sizes = {p.relative_to(SRC).as_posix(): len(p.read_text().splitlines()) for p in SRC.rglob("*.py")}
    big = {rel: n for rel, n in sizes.items() if n > 420 and rel not in OVERSIZED}
    assert not big, f"modules over 420 lines (split them by concept): {big}"
    split = sorted(rel for rel in OVERSIZED if sizes.get(rel, 0) <= 420)
    assert not split, f"modules of 420 lines or fewer (or gone) still on the OVERSIZED list; remove them: {split}"


def test_model_inputs_are_padded_and_batched_in_the_models_layer_only():
    # Right-padded scoring batches (companion.models.scoring) and left-padded generation batches
    # (companion.models.generation) are built in companion.models only: no other padding loop.
    pattern = re.compile(r"torch\.full\(\s*\(|pad_token_id\(|def _pad_id|right_padded\(|attention_mask=")
    allowed = {"models/scoring.py", "models/generation.py"}
    hits = [
        rel
        for p in SRC.rglob("*.py")
        if (rel := p.relative_to(SRC).as_posix()) not in allowed and pattern.search(p.read_text())
    ]
    assert hits == [], f"padding/batching of model inputs outside companion.models: {hits}"
