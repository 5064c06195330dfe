"""The order services start in (and, reversed, stop in).

Dependencies come from the operator's settings (``start_order``) and from
Compose v2's ``com.docker.compose.depends_on`` label when present (Compose v1
does not write it). A service starts after everything it depends on.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping, Sequence

from supervisor.const import COMPOSE_DEPENDS_ON_LABEL
from supervisor.exceptions import ConfigError


def depends_on_from_label(labels: Mapping[str, str]) -> tuple[str, ...]:
    """Parse ``svc:condition:restart,other:…`` into service names."""
    raw = labels.get(COMPOSE_DEPENDS_ON_LABEL, "")
    return tuple(part.split(":", 1)[0] for part in raw.split(",") if part.strip())


def start_order(
    dependencies: Mapping[str, Iterable[str]], preferred: Sequence[str] = ()
) -> list[str]:
    """Topological order of ``dependencies`` keys; ties broken by ``preferred``.

    Dependencies on services outside the mapping are ignored (a database the
    update does not recreate). A cycle is a configuration error.
    """
    names = set(dependencies)
    rank = {name: i for i, name in enumerate(preferred)}
    # preferred order also acts as a dependency chain between listed services
    edges: dict[str, set[str]] = {n: {d for d in dependencies[n] if d in names} for n in names}
    listed = [n for n in preferred if n in names]
    for before, after in itertools.pairwise(listed):
        edges[after].add(before)
    waiting = {n: len(deps) for n, deps in edges.items()}
    dependants: dict[str, list[str]] = {n: [] for n in names}
    for name, deps in edges.items():
        for dep in deps:
            dependants[dep].append(name)
    ready = [(rank.get(n, len(rank)), n) for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for dependant in dependants[name]:
            waiting[dependant] -= 1
            if waiting[dependant] == 0:
                heapq.heappush(ready, (rank.get(dependant, len(rank)), dependant))
    if len(order) != len(names):
        cycle = sorted(names - set(order))
        raise ConfigError(f"service dependencies form a cycle among: {', '.join(cycle)}")
    return order
