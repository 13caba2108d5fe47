"""The generic store: Kubernetes object semantics on top of the storage interface.

Every REST verb of every resource ends here (k8s.io/apiserver/pkg/registry/generic/registry/
store.go does the same job in kube-apiserver): metadata on create (uid, creationTimestamp,
generateName), optimistic concurrency on resourceVersion, status/spec split via the strategy,
finalizers and deletionTimestamp, graceful deletion, dry run, and consistent reads from the watch
cache. Objects are JSON dicts; the stored bytes never contain resourceVersion, which is the
storage revision and is set when an object is read.
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson

from pocketkube.api import errors, meta
from pocketkube.api.field_attrs import check_field_selector, field_values
from pocketkube.api.resources import ResourceInfo
from pocketkube.api.selectors import FieldSelector, LabelSelector
from pocketkube.apiserver.registry.strategy import Strategy
from pocketkube.apiserver.watch_cache import CachedObject, TooOldError, WatchCache
from pocketkube.storage.interface import (
    CompactedError,
    ConflictError,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    Storage,
)

Obj = dict[str, Any]
CONFLICT_MESSAGE = "the object has been modified; please apply your changes to the latest version and try again"


@dataclass(slots=True)
class WriteOptions:
    dry_run: bool = False
    field_manager: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class DeleteOptions:
    grace_period_seconds: int | None = None
    propagation_policy: str | None = None
    precondition_uid: str | None = None
    precondition_rv: str | None = None
    dry_run: bool = False


@dataclass(slots=True)
class ListOptions:
    label_selector: LabelSelector
    field_selector: FieldSelector
    limit: int = 0
    continue_token: str = ""
    resource_version: str = ""
    resource_version_match: str = ""


@dataclass(slots=True)
class ListResult:
    items: list[CachedObject]
    resource_version: str
    continue_token: str = ""
    remaining: int | None = None


ManagedFieldsHook = Callable[[Obj | None, Obj, str, str, str], Obj]
AdmissionHook = Callable[[str, ResourceInfo, Obj, Obj | None, bool], Awaitable[None]]


def encode(obj: Obj) -> bytes:
    md = obj.get("metadata")
    if isinstance(md, dict) and "resourceVersion" in md:
        md = dict(md)
        md.pop("resourceVersion")
        obj = {**obj, "metadata": md}
    return orjson.dumps(obj)


def with_rv(obj: Obj, revision: int) -> Obj:
    obj["metadata"]["resourceVersion"] = str(revision)
    return obj


def make_continue(revision: int, start: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"v": "pk1", "rv": revision, "start": start})).decode().rstrip("=")


def parse_continue(token: str) -> tuple[int, str]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(data["rv"]), str(data["start"])
    except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError) as e:
        raise errors.BadRequest(f"continue key is not valid: {e}") from e


class Store:
    """CRUD with Kubernetes semantics for one resource."""

    def __init__(self, info: ResourceInfo, strategy: Strategy, storage: Storage, cache: WatchCache,
                 *, managed_fields: ManagedFieldsHook | None = None,
                 admission: AdmissionHook | None = None) -> None:
        self.info = info
        self.strategy = strategy
        self.storage = storage
        self.cache = cache
        self.managed_fields = managed_fields
        self.admission = admission

    # ---- helpers ---------------------------------------------------------------------------
    def key(self, namespace: str, name: str) -> str:
        return self.info.key(namespace or None, name)

    def not_found(self, name: str) -> errors.NotFound:
        return errors.NotFound.for_resource(self.info.group, self.info.plural, name)

    def conflict(self, name: str, message: str = CONFLICT_MESSAGE) -> errors.Conflict:
        return errors.Conflict.for_resource(self.info.group, self.info.plural, name, message)

    def invalid(self, name: str, errs: list[errors.FieldError]) -> errors.Invalid:
        return errors.Invalid(self.info.group, self.info.kind, name, errs)

    # ---- reads -----------------------------------------------------------------------------
    async def get_cached(self, namespace: str, name: str, *, resource_version: str = "") -> CachedObject:
        if resource_version != "0":
            await self.cache.sync()
        co = self.cache.get(self.key(namespace, name))
        if co is None:
            raise self.not_found(name)
        return co

    async def get(self, namespace: str, name: str, *, resource_version: str = "") -> Obj:
        return copy.deepcopy((await self.get_cached(namespace, name, resource_version=resource_version)).obj)

    def _matcher(self, opts: ListOptions) -> Callable[[Obj], bool] | None:
        ls, fs = opts.label_selector, opts.field_selector
        if ls.empty() and fs.empty():
            return None
        check_field_selector(self.info.group, self.info.plural, fs)
        group, plural = self.info.group, self.info.plural

        def matches(obj: Obj) -> bool:
            if not ls.empty() and not ls.matches(meta.labels_of(obj)):
                return False
            return fs.empty() or fs.matches(field_values(group, plural, obj))

        return matches

    async def list(self, namespace: str, opts: ListOptions) -> ListResult:
        matches = self._matcher(opts)
        prefix = self.info.key_prefix(namespace or None)
        start = ""
        revision = 0
        if opts.continue_token:
            revision, start = parse_continue(opts.continue_token)
            if not start.startswith(prefix):
                raise errors.BadRequest("continue key is not valid: it belongs to another list")
        elif opts.resource_version_match == "Exact" and opts.resource_version not in ("", "0"):
            revision = _parse_rv(opts.resource_version)
        if revision and revision != self.cache.revision:
            return await self._list_from_storage(prefix, revision, start, opts, matches)
        if opts.resource_version not in ("", "0") and not opts.continue_token:
            try:
                await self.cache.wait_for(_parse_rv(opts.resource_version))
            except TimeoutError as e:
                raise errors.Timeout(f"Too large resource version: {opts.resource_version}, current: "
                                     f"{self.cache.revision}", retry_after=1) from e
        elif opts.resource_version != "0" and not opts.continue_token:
            await self.cache.sync()
        revision = self.cache.revision
        candidates = self.cache.list_prefix(prefix)
        items: list[CachedObject] = []
        more = False
        for co in candidates:
            if start and co.key < start:
                continue
            if matches is not None and not matches(co.obj):
                continue
            if opts.limit and len(items) >= opts.limit:
                more = True
                break
            items.append(co)
        token = make_continue(revision, items[-1].key + "\x00") if more and items else ""
        remaining = None
        if more and matches is None:
            remaining = sum(1 for co in candidates if co.key > items[-1].key)
        return ListResult(items, str(revision), token, remaining)

    async def _list_from_storage(self, prefix: str, revision: int, start: str, opts: ListOptions,
                                 matches: Callable[[Obj], bool] | None) -> ListResult:
        from pocketkube.apiserver.watch_cache import decode

        items: list[CachedObject] = []
        more = False
        cursor = start
        try:
            while True:
                batch = max(opts.limit, 500) if opts.limit else 1000
                res = await self.storage.list(prefix, revision=revision, limit=batch, start=cursor)
                for kv in res.items:
                    co = decode(kv.key, kv.value, kv.mod_revision)
                    if matches is not None and not matches(co.obj):
                        continue
                    if opts.limit and len(items) >= opts.limit:
                        more = True
                        break
                    items.append(co)
                if more or not res.more or not res.items:
                    break
                cursor = res.items[-1].key + "\x00"
        except CompactedError as e:
            if opts.continue_token:
                raise errors.Gone(
                    "The provided continue parameter is too old to display a consistent list result. You can "
                    "start a new list without the continue parameter.") from e
            raise errors.Gone(f"too old resource version: {revision} ({e.compacted})") from e
        except FutureRevisionError as e:
            raise errors.Timeout(f"Too large resource version: {revision}, current: {e.current}",
                                 retry_after=1) from e
        token = make_continue(revision, items[-1].key + "\x00") if more and items else ""
        return ListResult(items, str(revision), token)

    # ---- create ----------------------------------------------------------------------------
    async def create(self, namespace: str, obj: Obj, opts: WriteOptions) -> Obj:
        md = meta.metadata(obj)
        if self.info.namespaced:
            body_ns = md.get("namespace")
            if body_ns and namespace and body_ns != namespace:
                raise errors.BadRequest("the namespace of the provided object does not match the namespace sent "
                                        "on the request")
            md["namespace"] = namespace or body_ns or ""
        else:
            md.pop("namespace", None)
        if not md.get("name") and md.get("generateName"):
            from pocketkube.api.names import generate_name

            md["name"] = generate_name(str(md["generateName"]))
        for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            md.pop(k, None)
        md["uid"] = meta.new_uid()
        md["creationTimestamp"] = meta.now_rfc3339()
        self.strategy.default(obj)
        self.strategy.prepare_for_create(obj)
        _omit_empty_metadata(md)
        errs = self.strategy.validate(obj)
        if errs:
            raise self.invalid(str(md.get("name", "")), errs)
        if self.admission is not None:
            await self.admission("create", self.info, obj, None, opts.dry_run)
        if not md.get("name"):  # validation says so too; the storage key must never be built without it
            raise self.invalid("", [errors.FieldError("metadata.name", "name or generateName is required",
                                                      kind="FieldValueRequired")])
        if self.managed_fields is not None and opts.field_manager:
            obj = self.managed_fields(None, obj, opts.field_manager, "Update", "")
        name = str(md["name"])
        if opts.dry_run:
            if self.cache.get(self.key(namespace, name)) is not None:
                raise errors.AlreadyExists.for_resource(self.info.group, self.info.plural, name)
            return obj
        try:
            kv = await self.storage.create(self.key(namespace, name), encode(obj))
        except BaseException as e:
            if self.admission is not None:
                await self.admission("create-failed", self.info, obj, None, False)
            if isinstance(e, KeyExistsError):
                raise errors.AlreadyExists.for_resource(self.info.group, self.info.plural, name) from e
            raise
        return with_rv(obj, kv.mod_revision)

    # ---- update ----------------------------------------------------------------------------
    async def update(self, namespace: str, name: str, obj: Obj, opts: WriteOptions, *,
                     subresource: str = "", operation: str = "Update") -> Obj:
        md = meta.metadata(obj)
        body_name = md.get("name")
        if body_name and body_name != name:
            raise errors.BadRequest(f'the name of the object ({body_name}) does not match the name on the URL ({name})')
        if self.info.namespaced:
            body_ns = md.get("namespace")
            if body_ns and body_ns != namespace:
                raise errors.BadRequest("the namespace of the provided object does not match the namespace sent "
                                        "on the request")
        rv = str(md.get("resourceVersion") or "")
        if not rv and not self.strategy.allow_unconditional_update:
            raise self.invalid(name, [errors.FieldError("metadata.resourceVersion", "must be specified for an update",
                                                        kind="FieldValueInvalid", value=0)])
        expected = _parse_rv(rv) if rv else 0

        async def mutate(current: Obj) -> Obj:
            return copy.deepcopy(obj)

        return await self.guaranteed_update(namespace, name, mutate, opts, expected_revision=expected,
                                            subresource=subresource, operation=operation)

    async def guaranteed_update(self, namespace: str, name: str, mutate: Callable[[Obj], Awaitable[Obj]],
                                opts: WriteOptions, *, expected_revision: int = 0, subresource: str = "",
                                operation: str = "Update") -> Obj:
        """Read the current object, let `mutate` build the new one, write it with compare-and-swap.

        With expected_revision the write must happen on that revision (409 otherwise); without,
        conflicts are retried against the newer object, as kube's GuaranteedUpdate does.
        """
        key = self.key(namespace, name)
        for _ in range(32):
            current_co = await self.get_cached(namespace, name)
            if expected_revision and current_co.mod_revision != expected_revision:
                raise self.conflict(name)
            old = current_co.obj
            new = await mutate(copy.deepcopy(old))
            new = self._prepare_update(new, old, subresource)
            if self.managed_fields is not None and opts.field_manager and operation == "Update":
                new = self.managed_fields(old, new, opts.field_manager, "Update", subresource)
            if self.admission is not None:
                await self.admission("update", self.info, new, old, opts.dry_run)
            if _same_object(new, old):
                return copy.deepcopy(old)  # a no-op update writes nothing, like kube
            md = new["metadata"]
            if (md.get("deletionTimestamp") and not md.get("finalizers") and self._finalizers_gone(old, new)
                    and not self.strategy.delete_pending(new)):
                return await self._delete_now(namespace, name, current_co.mod_revision, new, opts.dry_run)
            if opts.dry_run:
                return new
            try:
                kv = await self.storage.update(key, encode(new), expected_revision=current_co.mod_revision)
            except ConflictError as e:
                if expected_revision:
                    raise self.conflict(name) from e
                if e.current is not None:
                    await self.cache.wait_for(e.current.mod_revision)
                continue
            except KeyNotFoundError as e:
                raise self.not_found(name) from e
            return with_rv(new, kv.mod_revision)
        raise self.conflict(name)

    def _prepare_update(self, new: Obj, old: Obj, subresource: str) -> Obj:
        name = meta.name_of(old)
        new_uid, old_uid = meta.metadata(new).get("uid"), old["metadata"].get("uid")
        if new_uid and new_uid != old_uid:
            # kube keeps the old uid only when none is sent; a different one fails ValidateObjectMetaUpdate
            raise self.invalid(name, [errors.FieldError("metadata.uid", "field is immutable", value=new_uid)])
        if subresource == "status":
            new = self.strategy.prepare_for_status_update(new, old)
            errs = self.strategy.validate_status_update(new, old)
        else:
            new_md = meta.metadata(new)
            # Fields a client may not change through an update.
            for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "namespace"):
                if k in old["metadata"]:
                    new_md[k] = old["metadata"][k]
                else:
                    new_md.pop(k, None)
            new_md["name"] = name
            if "generation" in old["metadata"]:
                new_md["generation"] = old["metadata"]["generation"]
            self.strategy.default(new)
            self.strategy.prepare_for_update(new, old)
            errs = self.strategy.validate_update(new, old)
        if errs:
            raise self.invalid(name, errs)
        _omit_empty_metadata(meta.metadata(new))
        return new

    @staticmethod
    def _finalizers_gone(old: Obj, new: Obj) -> bool:
        return bool(old["metadata"].get("finalizers")) or not old["metadata"].get("deletionGracePeriodSeconds")

    # ---- delete ----------------------------------------------------------------------------
    def check_delete_preconditions(self, name: str, md: Obj, opts: DeleteOptions) -> None:
        """DeleteOptions.preconditions (uid, resourceVersion) against the object's metadata: 409 if unmet."""
        if opts.precondition_uid and opts.precondition_uid != md.get("uid"):
            raise self.conflict(name, f"Precondition failed: UID in precondition: {opts.precondition_uid}, "
                                      f"UID in object meta: {md.get('uid')}")
        if opts.precondition_rv and opts.precondition_rv != md.get("resourceVersion"):
            raise self.conflict(name, "Precondition failed: ResourceVersion in precondition: "
                                      f"{opts.precondition_rv}, ResourceVersion in object meta: "
                                      f"{md.get('resourceVersion')}")

    async def delete(self, namespace: str, name: str, opts: DeleteOptions) -> tuple[Obj, bool]:
        """Delete; returns (object, deleted_now). Not deleted now: finalizers or grace pending."""
        for _ in range(32):
            co = await self.get_cached(namespace, name)
            obj = copy.deepcopy(co.obj)
            md = obj["metadata"]
            self.check_delete_preconditions(name, md, opts)
            if self.admission is not None:
                await self.admission("delete", self.info, obj, None, opts.dry_run)
            finalizers = list(md.get("finalizers") or [])
            policy = opts.propagation_policy
            if policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
                finalizers = [f for f in finalizers if f != "orphan"]
            elif policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
                finalizers = [f for f in finalizers if f != "foregroundDeletion"]
            grace = self.strategy.graceful_delete_seconds(obj, opts.grace_period_seconds)
            pending = bool(finalizers) or grace > 0 or self.strategy.delete_pending(obj)
            if not pending:
                try:
                    return await self._delete_now(namespace, name, co.mod_revision, obj, opts.dry_run), True
                except errors.Conflict:
                    continue
            new = copy.deepcopy(obj)
            nmd = new["metadata"]
            nmd["finalizers"] = finalizers
            now = meta.now()
            if grace > 0:
                current = nmd.get("deletionGracePeriodSeconds")
                if current is None or grace < int(current):
                    # an int64 of seconds overflows datetime; a century is "never" for a deletion
                    nmd["deletionTimestamp"] = meta.format_time(now + timedelta(seconds=min(grace, 100 * 365 * 86400)))
                    nmd["deletionGracePeriodSeconds"] = grace
            elif not nmd.get("deletionTimestamp"):
                nmd["deletionTimestamp"] = meta.format_time(now)
                nmd["deletionGracePeriodSeconds"] = 0
            self.strategy.on_delete_pending(new)
            if new == obj:
                return obj, False
            if opts.dry_run:
                return new, False
            try:
                kv = await self.storage.update(self.key(namespace, name), encode(new),
                                               expected_revision=co.mod_revision)
            except ConflictError as e:
                if e.current is not None:
                    await self.cache.wait_for(e.current.mod_revision)
                continue
            except KeyNotFoundError as e:
                raise self.not_found(name) from e
            return with_rv(new, kv.mod_revision), False
        raise self.conflict(name)

    async def _delete_now(self, namespace: str, name: str, revision: int, obj: Obj, dry_run: bool) -> Obj:
        if dry_run:
            return obj
        try:
            _, rev = await self.storage.delete(self.key(namespace, name), expected_revision=revision)
        except ConflictError as e:
            raise self.conflict(name) from e
        except KeyNotFoundError as e:
            raise self.not_found(name) from e
        if self.admission is not None:
            await self.admission("deleted", self.info, obj, None, False)
        return with_rv(obj, rev)


def _parse_rv(rv: str) -> int:
    try:
        value = int(rv)
    except ValueError:
        value = -1
    if value < 0:
        raise errors.BadRequest(f'invalid resource version "{rv}"')
    return value


# ObjectMeta's maps and lists are `omitempty`: kube-apiserver never stores or serves them empty (an
# annotation removed with `kubectl annotate x key-` leaves no `annotations: {}`). managedFields is not
# here: an empty list in an update means "reset them".
_OMITEMPTY_METADATA = ("labels", "annotations", "finalizers", "ownerReferences")


def _omit_empty_metadata(md: Obj) -> None:
    for key in _OMITEMPTY_METADATA:
        if key in md and not md[key]:
            del md[key]


def _same_object(new: Obj, old: Obj) -> bool:
    a = {**new, "metadata": {k: v for k, v in new.get("metadata", {}).items() if k != "resourceVersion"}}
    b = {**old, "metadata": {k: v for k, v in old.get("metadata", {}).items() if k != "resourceVersion"}}
    return a == b


__all__ = ["DeleteOptions", "ListOptions", "ListResult", "Store", "TooOldError", "WriteOptions"]
