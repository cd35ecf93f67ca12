"""Typed notebook parameters: unknown names and wrong types are rejected with clear messages."""

from typing import Literal

import pytest
from pydantic import Field, model_validator

from companion.backbone.params import NotebookParams, ParameterError
from companion.backbone.profiles import ProfileError, available_profiles, load_profile
from companion.backbone.runtime import resolve_params


class Demo(NotebookParams):
    """Demo."""

    n: int = 3
    """How many."""
    lr: float = 1e-3
    """Learning rate."""
    sites: tuple[str, ...] = ("a",)
    """Hook sites."""
    mode: Literal["fast", "slow"] = "fast"
    """Speed."""
    cap: int | None = None
    """Optional cap."""

    @model_validator(mode="after")
    def _check(self):
        if self.n <= 0:
            raise ValueError("n must be positive")
        return self


def test_valid_values_and_lossless_conversions():
    p = Demo.from_dict({"n": 4, "lr": 1, "sites": ["x", "y"], "mode": "slow", "cap": None})
    assert p == Demo(n=4, lr=1.0, sites=("x", "y"), mode="slow", cap=None)
    assert isinstance(p.lr, float)
    assert p.to_dict()["sites"] == ["x", "y"]
    assert p.replace(n=9).n == 9
    with pytest.raises(ValueError, match="frozen"):
        p.n = 5  # parameters are read-only once validated


@pytest.mark.parametrize(
    "values, message",
    [
        ({"nn": 1}, "unknown parameter 'nn' (did you mean 'n'?) for Demo. Allowed: seed, n, lr, sites, mode, cap."),
        ({"lr": float("nan")}, "Demo.lr: Input should be a finite number (got nan)"),
        ({"n": "3"}, "Demo.n: Input should be a valid integer (got '3')"),
        ({"n": 2.5}, "Demo.n: Input should be a valid integer (got 2.5)"),
        ({"n": True}, "Demo.n: Input should be a valid integer (got True)"),
        ({"lr": "fast"}, "Demo.lr: Input should be a valid number (got 'fast')"),
        ({"lr": True}, "Demo.lr: Input should be a valid number (got True)"),
        ({"sites": "a"}, "Demo.sites: Input should be a valid array (got 'a')"),
        ({"sites": [1]}, "Demo.sites.0: Input should be a valid string (got 1)"),
        ({"mode": "medium"}, "Demo.mode: Input should be 'fast' or 'slow' (got 'medium')"),
        ({"n": 0}, "Demo: n must be positive"),
        ({"cap": object()}, "parameter values must be plain data"),
    ],
)
def test_rejections(values, message):
    with pytest.raises(ParameterError) as e:
        Demo.from_dict(values)
    assert str(e.value).startswith(message)


def test_field_docs_are_read_from_source():
    docs = Demo.docs()
    assert docs["n"] == "How many." and docs["seed"].startswith("Seed")
    assert Demo.model_fields["lr"].description == "Learning rate."  # pydantic's own description, the same text
    assert "| `lr` | `0.001` | Learning rate. |" in Demo()._repr_markdown_()


def test_profiles_load_and_layer_overrides():
    assert {"ci", "organism", "paper"} <= set(available_profiles())
    ci, org, paper = (load_profile(n) for n in ("ci", "organism", "paper"))
    assert ci.offline and org.offline and not paper.offline
    assert ci.env["HF_HUB_OFFLINE"] == "1" and org.env["HF_HUB_OFFLINE"] == "1"
    assert ci.is_fallback and org.is_fallback and not paper.is_fallback
    assert ci.figures_dir.startswith("build/") and org.figures_dir == "figures/organism"
    with pytest.raises(ProfileError, match="unknown profile 'nope'"):
        load_profile("nope")
    prof = ci.model_copy(update={"notebooks": {"Demo": {"n": 7, "lr": 0.5}}})
    assert resolve_params(Demo, prof, {"lr": 0.25}) == Demo(n=7, lr=0.25)


def test_a_malformed_profile_names_each_bad_key_path():
    from companion.backbone.profiles import parse_profile

    good = "description: d\noffline: true\nfigures_dir: build/x\n"
    assert parse_profile("p", good).offline is True
    with pytest.raises(ProfileError, match=r"^src/companion/backbone/profiles/p\.yaml: figures_dir: Field required"):
        parse_profile("p", "description: d\noffline: true\n")
    with pytest.raises(ProfileError, match=r"offline: Input should be a valid boolean \(got 'yes please'\)"):
        parse_profile("p", good.replace("true", "'yes please'"))
    with pytest.raises(ProfileError, match=r"env\.HF_HUB_OFFLINE: Input should be a valid string"):
        parse_profile("p", good + "env: {HF_HUB_OFFLINE: 1}\n")
    with pytest.raises(ProfileError, match=r"organismz: unknown setting \(did you mean 'organisms'\?\)"):
        parse_profile("p", good + "organismz: {}\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        parse_profile("p", "description: [unclosed\n")


def test_profile_fields_carry_their_docs():
    from companion.backbone.profiles import Profile

    assert "never touch a model hub" in Profile.model_fields["offline"].description


@pytest.mark.parametrize(
    "text, field, expected",
    [
        ("3e-4", "lr", 3e-4),
        ("1E-3", "lr", 1e-3),
        ("2", "lr", 2.0),
        ("1_000", "n", 1000),
        ("1e3", "n", 1000),
        ("[x, y]", "sites", ("x", "y")),
        ("x,y", "sites", ("x", "y")),
        ("x", "sites", ("x",)),
        ("slow", "mode", "slow"),
        ("none", "cap", None),
        ("7", "cap", 7),
        ("True", "flag", True),
        ("no", "flag", False),
        ("on", "flag", True),
        ("[1e-3, 2]", "lrs", (1e-3, 2.0)),
        ("{a: 1}", "names", {"a": "1"}),
        ("1e2", "cap", 100),
        ("", "cap", None),
        ("007", "label", "007"),
        ("none", "label", "none"),
        (" 1e3, x ", "label", " 1e3, x "),
    ],
)
def test_command_line_text_is_read_by_the_declared_type(text, field, expected):
    values = Typed.from_text({field: text})
    p = Typed.from_dict(values)
    assert getattr(p, field) == expected and type(getattr(p, field)) is type(expected)


@pytest.mark.parametrize(
    "texts, message",
    [
        ({"n": "abc"}, "Typed.n: Input should be a valid integer, unable to parse string as an integer (got 'abc')"),
        ({"n": "1.5"}, "Typed.n: Input should be a valid integer, unable to parse string as an integer (got '1.5')"),
        ({"lr": "fast"}, "Typed.lr: Input should be a valid number, unable to parse string as a number (got 'fast')"),
        ({"flag": "maybe"}, "Typed.flag: Input should be a valid boolean, unable to interpret input (got 'maybe')"),
        ({"mode": "medium"}, "Typed.mode: Input should be 'fast' or 'slow' (got 'medium')"),
        ({"lrs": "[a]"}, "Typed.lrs.0: Input should be a valid number, unable to parse string as a number (got 'a')"),
        ({"names": "{a: [1"}, "Typed.names: cannot read '{a: [1' as a list or mapping"),
        ({"nope": "1"}, "unknown parameter 'nope' for Typed"),
    ],
)
def test_command_line_text_that_does_not_convert_is_named(texts, message):
    with pytest.raises(ParameterError) as e:
        Typed.from_text(texts)
    assert str(e.value).startswith(message)


def test_overrides_go_to_the_notebooks_whose_class_declares_them():
    from companion.backbone.plan import route_overrides

    routed = route_overrides({"01_a.ipynb": Typed, "02_b.ipynb": Demo}, {"lr": "3e-4", "flag": "yes", "seed": 3})
    assert routed == {"01_a.ipynb": {"lr": 3e-4, "flag": True, "seed": 3}, "02_b.ipynb": {"lr": 3e-4, "seed": 3}}
    with pytest.raises(
        ParameterError,
        match=r"^01_a.ipynb: Typed.n: Input should be a valid integer, unable to parse "
        r"string as an integer \(got 'x'\)$",
    ):
        route_overrides({"01_a.ipynb": Typed, "02_b.ipynb": Demo}, {"n": "x"})
    with pytest.raises(
        ParameterError,
        match=r"unknown parameter zz='1': none of the selected notebooks declares it "
        r"\(selected: 01_a.ipynb \(Typed\)\)",
    ):
        route_overrides({"01_a.ipynb": Typed}, {"zz": "1"})


class Typed(NotebookParams):
    """Every kind of field a notebook declares."""

    n: int = 3
    """An integer."""
    lr: float = 1e-3
    """A float."""
    sites: tuple[str, ...] = ("a",)
    """Strings."""
    lrs: tuple[float, ...] = (1.0,)
    """Floats."""
    mode: Literal["fast", "slow"] = "fast"
    """A choice."""
    cap: int | None = None
    """Optional."""
    flag: bool = False
    """A switch."""
    names: dict[str, str] = Field(default_factory=dict)
    """A mapping."""
    label: str = ""
    """Text, taken verbatim."""


def test_a_new_sae_field_keys_the_trained_saes_unless_marked_otherwise():
    """The "sae" cache key's training settings are derived from the fields, so a new field cannot be left out."""
    from typing import Annotated

    from companion.sae.params import EVAL_FIELDS, TRAIN_FIELDS, KeyPart, ParetoParams, ShrinkageParams, key_fields

    class Extended(ParetoParams):
        new_knob: int = 1
        """A setting someone adds later, without thinking about the cache."""
        new_metric: Annotated[int, KeyPart.EVAL] = 1
        """An evaluation setting."""
        new_display: Annotated[bool, KeyPart.ELSEWHERE] = True
        """A setting that changes no number."""

    assert key_fields(KeyPart.TRAIN, Extended) == (*TRAIN_FIELDS, "new_knob")
    assert key_fields(KeyPart.EVAL, Extended) == (*EVAL_FIELDS, "new_metric")
    assert {"seed", "lr", "lambdas_gated", "train_tokens"} <= set(TRAIN_FIELDS)
    assert not {"device", "progress", "torch_threads", "targets", "eval_tokens"} & set(TRAIN_FIELDS)
    # Notebook 02's own fields key nothing: it reuses notebook 01's SAEs.
    assert not (set(ShrinkageParams.model_fields) - set(ParetoParams.model_fields)) & set(TRAIN_FIELDS + EVAL_FIELDS)
