"""What cleans a source: the cleaner hook module its entry names (`cleaner:`), or the declared cleaner built from
its schema. Both offer CLEAN_SCHEMA, DEDUP_KEY, `clean(raw, ds, spec)` and, when files are joined,
`combine(frames)`; the pipeline only meets them through `cleaner_of`."""

from __future__ import annotations

from types import ModuleType

from shopflow.sources.declared import DeclaredCleaner, declared_cleaner
from shopflow.sources.spec import SourceSpec


def cleaner_of(spec: SourceSpec) -> ModuleType | DeclaredCleaner:
    """The source's cleaner: its hook module, else the declared cleaner (built once per spec object)."""
    return declared_cleaner(spec) if spec.cleaner is None else spec.cleaner_module()
