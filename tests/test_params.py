"""Typed notebook parameters: unknown names and wrong types are rejected with clear messages."""
import dataclasses
from typing import Literal

import pytest

from companion.backbone.params import NotebookParams, ParameterError
from companion.backbone.profiles import ProfileError, available_profiles, load_profile
from companion.backbone.runtime import resolve_params


@dataclasses.dataclass
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

    def __post_init__(self):
        if self.n <= 0:
            raise ValueError("n must be positive")


def test_valid_values_and_lossless_conversions():
    p = Demo.from_dict({"n": 4, "lr": 1, "sites": ["x", "y"], "mode": "slow", "cap": None})
    assert p == Demo(n=4, lr=1.0, sites=("x", "y"), mode="slow", cap=None)
    assert isinstance(p.lr, float)
    assert p.to_dict()["sites"] == ["x", "y"]
    assert p.replace(n=9).n == 9


@pytest.mark.parametrize(
    "values, pattern",
    [
        ({"nn": 1}, "unknown parameter 'nn'.*Allowed: seed, n, lr"),
        ({"n": "3"}, "'n' of Demo must be int"),
        ({"n": 2.5}, "must be int"),
        ({"n": True}, "must be int"),
        ({"lr": "fast"}, "must be float"),
        ({"sites": "a"}, "must be"),
        ({"sites": [1]}, "must be"),
        ({"mode": "medium"}, "one of \\['fast', 'slow'\\]"),
        ({"n": 0}, "n must be positive"),
    ],
)
def test_rejections(values, pattern):
    with pytest.raises(ParameterError, match=pattern):
        Demo.from_dict(values)


def test_field_docs_are_read_from_source():
    docs = Demo.docs()
    assert docs["n"] == "How many." and docs["seed"].startswith("Seed")
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
    with pytest.raises(ProfileError, match=r"profile p: figures_dir: Field required"):
        parse_profile("p", "description: d\noffline: true\n")
    with pytest.raises(ProfileError, match=r"offline: Input should be a valid boolean \(got 'yes please'\)"):
        parse_profile("p", good.replace("true", "'yes please'"))
    with pytest.raises(ProfileError, match=r"env\.HF_HUB_OFFLINE: Input should be a valid string"):
        parse_profile("p", good + "env: {HF_HUB_OFFLINE: 1}\n")
    with pytest.raises(ProfileError, match=r"organismz: Extra inputs are not permitted"):
        parse_profile("p", good + "organismz: {}\n")
    with pytest.raises(ProfileError, match="not valid YAML"):
        parse_profile("p", "description: [unclosed\n")


def test_profile_fields_carry_their_docs():
    from companion.backbone.profiles import Profile

    assert "never touch a model hub" in Profile.model_fields["offline"].description


@pytest.mark.parametrize(
    "text, field, expected",
    [
        ("3e-4", "lr", 3e-4), ("1E-3", "lr", 1e-3), ("2", "lr", 2.0), ("1_000", "n", 1000), ("1e3", "n", 1000),
        ("[x, y]", "sites", ("x", "y")), ("x,y", "sites", ("x", "y")), ("x", "sites", ("x",)),
        ("slow", "mode", "slow"), ("none", "cap", None), ("7", "cap", 7), ("True", "flag", True),
        ("no", "flag", False), ("[1e-3, 2]", "lrs", (1e-3, 2.0)), ("{a: 1}", "names", {"a": "1"}),
    ],
)
def test_command_line_text_is_read_by_the_declared_type(text, field, expected):
    values = Typed.from_text({field: text})
    p = Typed.from_dict(values)
    assert getattr(p, field) == expected and type(getattr(p, field)) is type(expected)


@pytest.mark.parametrize(
    "texts, message",
    [
        ({"n": "abc"}, "parameter 'n' of Typed must be int, got 'abc'"),
        ({"n": "1.5"}, "parameter 'n' of Typed must be int, got '1.5'"),
        ({"lr": "fast"}, "parameter 'lr' of Typed must be float, got 'fast'"),
        ({"flag": "maybe"}, "parameter 'flag' of Typed must be bool, got 'maybe'"),
        ({"mode": "medium"}, "parameter 'mode' of Typed must be one of ['fast', 'slow'], got 'medium'"),
        ({"lrs": "[a]"}, "parameter 'lrs' of Typed must be float, got 'a'"),
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
    with pytest.raises(ParameterError, match=r"^01_a.ipynb: parameter 'n' of Typed must be int, got 'x'$"):
        route_overrides({"01_a.ipynb": Typed, "02_b.ipynb": Demo}, {"n": "x"})
    with pytest.raises(ParameterError, match=r"unknown parameter zz='1': none of the selected notebooks declares it "
                                             r"\(selected: 01_a.ipynb \(Typed\)\)"):
        route_overrides({"01_a.ipynb": Typed}, {"zz": "1"})


@dataclasses.dataclass
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
    names: dict[str, str] = dataclasses.field(default_factory=dict)
    """A mapping."""
