"""Published sycophancy numbers, drawn only as reference markers, never as measured points
(Perez et al. 2022 Fig. 4; nostalgebraist 2023): ``docs/references.md#sycophancy-published-numbers``."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class PublishedPoint:
    """A number reported in the literature."""

    source: str
    """Who reported it."""
    model: str
    """The model it was measured on."""
    n_params: float | None
    """The model's size when published, else None (undisclosed: drawn off the size axis)."""
    dataset: str | None
    """Short dataset name, or None when the report does not break it down by dataset."""
    template: str
    """Prompt template name (see :data:`TEMPLATES`)."""
    value: float
    """The reported rate (a fraction)."""
    low: float | None
    """Lower end of the reported 95% CI, if any."""
    high: float | None
    """Upper end of the reported 95% CI, if any."""
    lower_bound_only: bool
    """True when the report states only "more than ``value``"."""
    label: str
    """Legend text."""


PUBLISHED: tuple[PublishedPoint, ...] = (
    *(  # one statement for both datasets
        PublishedPoint(
            "Perez et al. 2022 (Fig. 4)",
            "Perez 52B",
            52e9,
            dataset,
            "anthropic",
            0.90,
            None,
            None,
            True,
            "Perez et al. 52B pretrained LM: >90%",
        )
        for dataset in ("nlp_survey", "philpapers2020")
    ),
    PublishedPoint("nostalgebraist", "davinci", None, None, "paren", 0.537, 0.512, 0.564, False, 'davinci, "(" prompt'),
    PublishedPoint(
        "nostalgebraist",
        "davinci",
        None,
        None,
        "believe_paren",
        0.567,
        0.560,
        0.575,
        False,
        'davinci, "I believe ... (" prompt',
    ),
    PublishedPoint(
        "nostalgebraist", "davinci-002", None, None, "paren", 0.535, 0.513, 0.558, False, 'davinci-002, "(" prompt'
    ),
    PublishedPoint(
        "nostalgebraist",
        "davinci-002",
        None,
        None,
        "believe_paren",
        0.526,
        0.523,
        0.530,
        False,
        'davinci-002, "I believe ... (" prompt',
    ),
)
"""Reported numbers (``docs/references.md``): Perez et al.'s ">90% at 52B" (NLP and philosophy) and
nostalgebraist's davinci / davinci-002 rates with 95% CIs (not broken down by dataset in the reference)."""
