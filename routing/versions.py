"""Model versions as first-class model ids (``vendor/model:branch``).

Some providers publish one model under several moving branches; Yandex's
``latest``, ``rc`` and ``deprecated`` are the model case. XRouter gives each
branch its own public id (``yandex/yandexgpt:rc``), so keys, prices, usage
and routing treat them as separate models, and:

* a bare id (``yandex/yandexgpt``) means ``:latest`` when the catalog has a
  ``:latest`` entry and no model of that exact id;
* a branch flagged ``deprecated`` answers with ``Deprecation``, ``Sunset``
  (when its end date is known) and ``Warning`` headers;
* the catalog records each branch's dates (``since``, ``until``), so the
  operator sees when ``rc`` becomes ``latest`` (:func:`version_calendar`).

Catalog format (expanded by :func:`expand_versions` into one model entry per
branch before the ordinary loader runs)::

    models:
      - id: yandex/yandexgpt
        provider: yandex
        upstream: yandexgpt            # "/<branch>" is appended per branch
        versions:
          latest: {since: 2025-02-09, until: 2025-08-01, model_version: "09.02.2025"}
          rc: {since: 2025-07-01, until: 2025-08-01}     # until = promotion
          deprecated: {since: 2025-02-09, until: 2025-09-01}  # until = sunset

A branch may override ``upstream``, ``pricing``, ``context_length``, ``name``
and ``enabled``; ``deprecated`` defaults to true for the ``deprecated``
branch only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

LATEST = "latest"
DEPRECATED = "deprecated"
VERSION_SEPARATOR = ":"
# Keys a branch entry may carry; anything else is a typo worth reporting.
_BRANCH_FIELDS = {
    "upstream",
    "since",
    "until",
    "model_version",
    "deprecated",
    "pricing",
    "context_length",
    "name",
    "enabled",
}
# Model-level fields copied to every branch entry.
_INHERITED = ("name", "type", "provider", "context_length", "pricing", "enabled", "options")


class VersionedRoute(Protocol):
    """What the helpers need from :class:`routing.table.ModelRoute`."""

    @property
    def model_id(self) -> str: ...
    @property
    def deprecated(self) -> bool: ...
    @property
    def version_since(self) -> dt.date | None: ...
    @property
    def version_until(self) -> dt.date | None: ...
    @property
    def upstream_version(self) -> str: ...


class CatalogVersionError(ValueError):
    """A ``versions`` block is malformed; the message says where."""


def split_version(model_id: str) -> tuple[str, str | None]:
    """Return ``(base id, version or None)`` for a public model id."""
    base, sep, version = model_id.partition(VERSION_SEPARATOR)
    return (base, version) if sep else (model_id, None)


def resolve_model_id(model_id: str, known: Mapping[str, Any]) -> str:
    """Return the catalog id that serves ``model_id``.

    An exact entry wins; otherwise a bare id resolves to its ``:latest``
    entry. Unknown ids come back unchanged so the caller reports them as
    the client wrote them.
    """
    if model_id in known:
        return model_id
    base, version = split_version(model_id)
    if version is None:
        latest = f"{base}{VERSION_SEPARATOR}{LATEST}"
        if latest in known:
            return latest
    return model_id


def branch_upstream(upstream: str, branch: str) -> str:
    """Return the upstream model name for ``branch`` of ``upstream``.

    ``yandexgpt`` becomes ``yandexgpt/rc``; a name that already ends in a
    known branch (``yandexgpt/latest``, ``gpt://f/yandexgpt/latest``) has
    that branch replaced, so the catalog can name either form.
    """
    head, sep, tail = upstream.rpartition("/")
    if sep and tail in ("latest", "rc", "deprecated"):
        upstream = head
    return f"{upstream}/{branch}"


def _date(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise CatalogVersionError(f"{where}: {value!r} is not a date (YYYY-MM-DD)")


def expand_versions(entries: Iterable[Any]) -> list[Any]:
    """Expand catalog model entries with ``versions`` into one entry per branch.

    Entries without ``versions`` pass through untouched (the loader
    validates them). Expanded entries carry ``deprecated``, ``since``,
    ``until`` and ``model_version``, which the loader stores on the model.
    """
    expanded: list[Any] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "versions" not in entry:
            expanded.append(entry)
            continue
        where = f"models[{i}].versions"
        base_id = entry.get("id")
        if not isinstance(base_id, str) or not base_id or VERSION_SEPARATOR in base_id:
            raise CatalogVersionError(f"models[{i}]: a versioned model needs an id without ':'")
        versions = entry["versions"]
        if not isinstance(versions, dict) or not versions:
            raise CatalogVersionError(f"{where}: expected a mapping of branch -> dates")
        if "deployments" in entry:
            raise CatalogVersionError(
                f"models[{i}]: versioned models take provider/upstream, not deployments"
            )
        upstream = entry.get("upstream")
        for branch, raw in versions.items():
            branch_where = f"{where}.{branch}"
            spec = raw or {}
            if not isinstance(branch, str) or not branch or VERSION_SEPARATOR in branch:
                raise CatalogVersionError(f"{branch_where}: invalid branch name")
            if not isinstance(spec, dict):
                raise CatalogVersionError(f"{branch_where}: expected a mapping")
            unknown = set(spec) - _BRANCH_FIELDS
            if unknown:
                raise CatalogVersionError(
                    f"{branch_where}: unknown field(s) {', '.join(sorted(unknown))}"
                )
            out: dict[str, Any] = {k: entry[k] for k in _INHERITED if k in entry}
            out["id"] = f"{base_id}{VERSION_SEPARATOR}{branch}"
            branch_up = spec.get("upstream")
            if branch_up is None and isinstance(upstream, str) and upstream:
                branch_up = branch_upstream(upstream, branch)
            out["upstream"] = branch_up
            for key in ("pricing", "context_length", "name", "enabled"):
                if key in spec:
                    out[key] = spec[key]
            out["deprecated"] = bool(spec.get("deprecated", branch == DEPRECATED))
            out["since"] = _date(spec.get("since"), f"{branch_where}.since")
            out["until"] = _date(spec.get("until"), f"{branch_where}.until")
            out["model_version"] = str(spec.get("model_version") or "")
            expanded.append(out)
    return expanded


def _http_date(day: dt.date) -> str:
    moment = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")


def deprecation_headers(route: VersionedRoute | None) -> dict[str, str]:
    """Return the headers that warn a client off a deprecated version.

    ``Deprecation`` uses RFC 9745's ``@<unix seconds>`` form (only when the
    catalog knows the date), ``Sunset`` is RFC 8594's end date, and
    ``Warning: 299`` is what most HTTP client libraries still surface.
    """
    if route is None or not route.deprecated:
        return {}
    base, _version = split_version(route.model_id)
    text = f"The model '{route.model_id}' is deprecated"
    if route.version_until:
        text += f" and will be withdrawn on {route.version_until.isoformat()}"
    text += f"; move to '{base}:{LATEST}'."
    headers = {"Warning": f'299 - "{text}"'}
    if route.version_since:
        since = dt.datetime(
            route.version_since.year,
            route.version_since.month,
            route.version_since.day,
            tzinfo=dt.UTC,
        )
        headers["Deprecation"] = f"@{int(since.timestamp())}"
    if route.version_until:
        headers["Sunset"] = _http_date(route.version_until)
    return headers


def version_fields(route: VersionedRoute) -> dict[str, Any]:
    """Return the ``version`` object /v1/models shows for a versioned model."""
    base, version = split_version(route.model_id)
    if version is None:
        return {}
    return {
        "version": {
            "base": base,
            "branch": version,
            "deprecated": route.deprecated,
            "since": route.version_since.isoformat() if route.version_since else None,
            "until": route.version_until.isoformat() if route.version_until else None,
            "upstream_version": route.upstream_version or None,
        }
    }


def version_calendar(
    routes: Iterable[VersionedRoute], *, today: dt.date | None = None
) -> list[dict[str, Any]]:
    """Return upcoming branch changes (promotions, sunsets), soonest first.

    Built for the operator's dashboard: each row names the model id, what
    happens (``rc`` -> "promoted to latest", ``deprecated`` -> "withdrawn",
    other branches -> "changes") and in how many days.
    """
    today = today or dt.datetime.now(dt.UTC).date()
    rows = []
    for route in routes:
        _base, version = split_version(route.model_id)
        if version is None or route.version_until is None:
            continue
        event = {"rc": "promoted to latest", DEPRECATED: "withdrawn"}.get(version, "changes")
        rows.append(
            {
                "model": route.model_id,
                "event": event,
                "date": route.version_until.isoformat(),
                "days_left": (route.version_until - today).days,
                "deprecated": route.deprecated,
            }
        )
    return sorted(rows, key=lambda row: (row["date"], row["model"]))
