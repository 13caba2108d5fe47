"""The change between two tables as one nft transaction touching only what changed.

Reloading the whole table costs about as much as building it, so, as kube-proxy's nftables mode
does, a sync after the first sends only: new affinity sets and chains, flush + refill of changed
chains, element deletes/adds in the verdict maps, then deletes of chains and sets nothing
references any more — in that order, so every reference inside the batch is valid. The batch is
still atomic. When the base chains change (bridge, node IPs) the caller loads the full script.

`TableState` keeps the loaded table per Service, so a sync renders and compares only the Services
whose objects changed (kube-proxy's partial sync): the cost of a change does not grow with the
number of Services. `incremental_script` compares two whole Rulesets the same way (tests, bench).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pocketkube.proxy.nftables_render import Fragment, Ruleset, assemble

MapKey = tuple[str, str]  # (map name, element key)


@dataclass
class _Batch:
    """The commands of one transaction, by phase (see the module docstring for the order)."""

    table: str
    add_sets: list[str] = field(default_factory=list)
    add_chains: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    delete_elements: dict[str, list[str]] = field(default_factory=dict)
    add_elements: dict[str, list[str]] = field(default_factory=dict)
    removed_chains: list[str] = field(default_factory=list)
    removed_sets: list[str] = field(default_factory=list)

    def chains(self, old: dict[str, list[str]], new: dict[str, list[str]]) -> None:
        t = self.table
        for name, rules in new.items():
            before = old.get(name)
            if before == rules:
                continue
            if before is None:
                self.add_chains.append(f"add chain ip {t} {name}")
            else:
                self.rules.append(f"flush chain ip {t} {name}")
            self.rules += [f"add rule ip {t} {name} {rule}" for rule in rules]
        self.removed_chains += [name for name in old if name not in new]

    def sets(self, old: dict[str, list[str]], new: dict[str, list[str]]) -> bool:
        """False when a set changed its definition: sets cannot be redefined in place."""
        for name, body in new.items():
            if name not in old:
                self.add_sets.append(f"add set ip {self.table} {name} {{ {'; '.join(body)}; }}")
            elif old[name] != body:
                return False
        self.removed_sets += [name for name in old if name not in new]
        return True

    def element(self, key: MapKey, before: str | None, after: str | None) -> None:
        if before == after:
            return
        name, element = key
        if before is not None:
            self.delete_elements.setdefault(name, []).append(element)
        if after is not None:
            self.add_elements.setdefault(name, []).append(f"{element} : {after}")

    def script(self) -> str:
        t = self.table
        out = self.add_sets + self.add_chains + self.rules
        out += [f"delete element ip {t} {name} {{ {', '.join(keys)} }}" for name, keys in self.delete_elements.items()]
        out += [f"add element ip {t} {name} {{ {', '.join(items)} }}" for name, items in self.add_elements.items()]
        # flush first: a chain cannot be deleted while another one's rules still jump to it
        out += [f"flush chain ip {t} {name}" for name in self.removed_chains]
        out += [f"delete chain ip {t} {name}" for name in self.removed_chains]
        out += [f"delete set ip {t} {name}" for name in self.removed_sets]
        return "\n".join(out) + "\n" if out else ""


def incremental_script(old: Ruleset, new: Ruleset) -> str | None:
    """An nft script turning `old` into `new`, "" when they are equal, None when only a full
    reload will do."""
    if old.table != new.table or old.fixed != new.fixed or old.maps.keys() != new.maps.keys():
        return None
    batch = _Batch(new.table)
    if not batch.sets(old.sets, new.sets):
        return None
    batch.chains(old.chains, new.chains)
    for name, elements in new.maps.items():
        previous = old.maps[name]
        for key in sorted(previous.keys() | elements.keys()):
            batch.element((name, key), previous.get(key), elements.get(key))
    return batch.script()


def _merged(fragments: list[Fragment], attr: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for frag in fragments:
        out.update(getattr(frag, attr))
    return out


class TableState:
    """The table last loaded, kept per Service (namespace/name → the fragments of its ports)."""

    def __init__(self, table: str, fixed: dict[str, list[str]], services: dict[str, list[Fragment]]) -> None:
        self.table = table
        self.fixed = fixed
        self.services: dict[str, list[Fragment]] = {}
        # who claims each map element: {order: verdict}; as in a full render the last in order wins
        self.owners: dict[MapKey, dict[tuple[str, str, int, str], str]] = {}
        for sid, fragments in services.items():
            self._put(sid, fragments, self.owners)

    def ruleset(self) -> Ruleset:
        """The table as loaded; its maps come from the element owners the diffs were built from."""
        out = assemble(self.table, self.fixed, [f for frags in self.services.values() for f in frags])
        maps: dict[str, dict[str, str]] = {name: {} for name in out.maps}
        for (name, key), claims in sorted(self.owners.items()):
            if (verdict := _winner(claims)) is not None:
                maps[name][key] = verdict
        for name, elements in out.maps.items():  # in the full render's order, for an equal script
            maps[name] = {k: maps[name][k] for k in elements if k in maps[name]} | maps[name]
        out.maps = maps
        return out

    def _put(self, sid: str, fragments: list[Fragment],
             owners: dict[MapKey, dict[tuple[str, str, int, str], str]]) -> None:
        for frag in self.services.get(sid, []):
            for name, key, _ in frag.elements:
                owners[(name, key)].pop(frag.order, None)
        for frag in fragments:
            for name, key, verdict in frag.elements:
                owners.setdefault((name, key), {})[frag.order] = verdict
        if fragments:
            self.services[sid] = fragments
        else:
            self.services.pop(sid, None)

    def update(self, changes: dict[str, list[Fragment]]) -> str | None:
        """The script that moves the loaded table to `changes` (Service id → its new fragments,
        [] when it is gone or has no ports) and the state with it; None (state untouched) when
        only a full reload will do."""
        batch = _Batch(self.table)
        old_all = [f for sid in changes for f in self.services.get(sid, [])]
        new_all = [f for frags in changes.values() for f in frags]
        if not batch.sets(_merged(old_all, "sets"), _merged(new_all, "sets")):
            return None
        batch.chains(_merged(old_all, "chains"), _merged(new_all, "chains"))
        touched = {(name, key) for frag in old_all + new_all for name, key, _ in frag.elements}
        before = {k: dict(self.owners.get(k, {})) for k in touched}
        after = {k: dict(v) for k, v in before.items()}
        for sid, fragments in changes.items():
            self._put(sid, fragments, after)
        for k in sorted(touched):
            batch.element(k, _winner(before[k]), _winner(after[k]))
        for k, claims in after.items():
            if claims:
                self.owners[k] = claims
            else:
                self.owners.pop(k, None)
        return batch.script()


def _winner(claims: dict[tuple[str, str, int, str], str]) -> str | None:
    return claims[max(claims)] if claims else None
