"""Which sources play each role (catalog, orders, events, search), and which one the model branch serves.

The report's users, products and search sections, the catalogue view and the model branch read clean data by what
it means, not by dataset or column name: they ask here for the sources of a role (every one of them, in
sources-file order) and read columns through the role's fields (`shopflow.sources.role_frames` for frames). A source
whose role leaves out an optional field is still used for what it does map; `no_field` words what is lost.

The category model learns product text -> top-level category, so the model branch (training gate, train, repair,
search intent) serves one **model catalogue**: the first catalog-role source that maps a `title` and
`category_levels` (or a `category_path`). `model_catalog()` names it and says, per other catalog source, why it is
not trained on. Nothing here reads data or imports pandas: the DAG file asks at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from shopflow.sources import SourceSpec, load_sources

ROLES = ("catalog", "orders", "events", "search")


def sources_of(role: str, specs: Mapping[str, SourceSpec] | None = None) -> list[SourceSpec]:
    """The sources (of `specs`, default the sources file) that declare `role`, in sources-file order."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; the roles: {', '.join(ROLES)}")
    specs = load_sources() if specs is None else specs
    return [spec for spec in specs.values() if spec.role is not None and spec.role.name == role]


def source_of(role: str, name: str | None = None, specs: Mapping[str, SourceSpec] | None = None) -> SourceSpec:
    """The source `name` (checked to play `role`), or without a name the first source of the role."""
    candidates = sources_of(role, specs)
    if name is None:
        if not candidates:
            raise LookupError(f"the sources file declares no source with the role {role}")
        return candidates[0]
    chosen = next((spec for spec in candidates if spec.name == name), None)
    if chosen is None:
        raise LookupError(f"{name} is not a {role}-role source; those are: "
                          f"{', '.join(s.name for s in candidates) or 'none'}")
    return chosen


def maps(spec: SourceSpec, role_field: str) -> bool:
    """Whether the source's role maps the field (a non-empty list for category_levels)."""
    return spec.role is not None and bool(spec.role.columns(role_field))


def absent(spec: SourceSpec, *role_fields: str) -> list[str]:
    """The fields, of those given, that the source's role does not map."""
    return [name for name in role_fields if not maps(spec, name)]


def no_field(spec: SourceSpec, role_fields: str | list[str], consequence: str) -> str:
    """The sentence a report block or a log line says for a missing field, e.g. "olist_catalog declares no price
    field: no price distribution"."""
    names = [role_fields] if isinstance(role_fields, str) else list(role_fields)
    return f"{spec.name} declares no {' or '.join(names)} field{'s' if len(names) > 1 else ''}: {consequence}"


def has_categories(spec: SourceSpec) -> bool:
    return maps(spec, "category_levels") or maps(spec, "category_path")


def training_obstacle(spec: SourceSpec) -> str | None:
    """Why the category model cannot learn from this catalog source (None when it can)."""
    if spec.role is None or spec.role.name != "catalog":
        return f"{spec.name}: not a catalog-role source; not trained"
    if not maps(spec, "title"):
        return f"{spec.name}: no title field in its catalog role: the category model needs product text; not trained"
    if not has_categories(spec):
        return (f"{spec.name}: no category_levels or category_path field in its catalog role: the category model "
                f"needs categories to learn; not trained")
    return None


@dataclass(frozen=True)
class ModelCatalog:
    """The catalog source the model branch serves (None when no catalog source can train), and why each other
    catalog source is not used."""

    source: SourceSpec | None
    passed_over: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str | None:
        return self.source.name if self.source else None

    def explain(self) -> str:
        """One line for a log or a skip: which catalogue is served and why the others are not."""
        served = (f"the model catalogue is {self.source.name}" if self.source
                  else "no catalog source can train the category model")
        return "; ".join([served, *self.passed_over.values()])


def model_catalog(specs: Mapping[str, SourceSpec] | None = None) -> ModelCatalog:
    """The first catalog-role source that can train (see the module docstring), and the reasons for the others."""
    chosen, passed_over = None, {}
    for spec in sources_of("catalog", specs):
        obstacle = training_obstacle(spec)
        if obstacle is None and chosen is None:
            chosen = spec
        else:
            passed_over[spec.name] = obstacle or (
                f"{spec.name}: could train, but the model branch serves one catalogue, {chosen.name} (the first "
                f"catalog source that can); not trained")
    return ModelCatalog(chosen, passed_over)


def model_catalog_source(name: str | None = None) -> SourceSpec:
    """The model catalogue, or the named catalog source checked to be able to train."""
    if name is None:
        catalogue = model_catalog()
        if catalogue.source is None:
            raise LookupError(catalogue.explain())
        return catalogue.source
    spec = source_of("catalog", name)
    obstacle = training_obstacle(spec)
    if obstacle:
        raise LookupError(obstacle)
    return spec
