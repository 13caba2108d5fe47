"""The node's image store: pull (OCI distribution), import archives, unpack layers once, mount rootfs.

The kubelet holds one `ImageStore` rooted at `<data-dir>/images`, calls `pull_if_needed` with the
container's imagePullPolicy and the credentials from its imagePullSecrets, then `mount_rootfs` for
each container and `unmount` when the container is removed.
"""

from pocketkube.kubelet.images.credentials import (
    Credentials,
    credentials_from_dockerconfigjson,
    lookup_credentials,
)
from pocketkube.kubelet.images.errors import (
    ArchiveError,
    ImageError,
    ImageNeverPullError,
    ImageNotFoundError,
    ImagePullError,
    InvalidReferenceError,
    LayerError,
    MountError,
)
from pocketkube.kubelet.images.manifest import ImageConfig
from pocketkube.kubelet.images.reference import ImageReference, normalize_reference, parse_reference
from pocketkube.kubelet.images.store import GCResult, Image, ImageStore, PullPolicy

__all__ = [
    "ArchiveError",
    "Credentials",
    "GCResult",
    "Image",
    "ImageConfig",
    "ImageError",
    "ImageNeverPullError",
    "ImageNotFoundError",
    "ImagePullError",
    "ImageReference",
    "ImageStore",
    "InvalidReferenceError",
    "LayerError",
    "MountError",
    "PullPolicy",
    "credentials_from_dockerconfigjson",
    "lookup_credentials",
    "normalize_reference",
    "parse_reference",
]
