"""Cycles in a directed graph, for the rules that must find them (tasks' dependencies).

Tarjan's strongly connected components, iterative: a long chain (5000 tasks each
depending on the one before) must not exhaust Python's stack.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Every set of nodes that reach each other along `edges` (node -> the nodes it points
    at): the components of more than one node, and a node pointing at itself. Each
    component sorted, and the list sorted. Edges to nodes not in `edges` are ignored."""
    targets = {node: [t for t in outs if t in edges] for node, outs in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(targets):
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            outs = targets[node]
            if i < len(outs):
                work.append((node, i + 1))
                nxt = outs[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if work:  # back in the caller: it inherits what this node reaches
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1 or node in targets[node]:
                    found.append(sorted(component))
    return sorted(found)
