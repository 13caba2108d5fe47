"""Errors of the node's image store.

The kubelet turns these into container waiting reasons (`ErrImagePull`, `ErrImageNeverPull`,
`InvalidImageName`), so each class carries the reason it maps to. They are not API errors: the
image store never answers HTTP requests.
"""

from __future__ import annotations


class ImageError(Exception):
    """Base class of every image store error."""

    reason = "ErrImagePull"


class InvalidReferenceError(ImageError, ValueError):
    """An image reference that does not parse (`InvalidImageName` in the kubelet)."""

    reason = "InvalidImageName"


class ImageNotFoundError(ImageError, LookupError):
    """The image is not in the local store."""

    reason = "ErrImageNotPresent"


class LayerError(ImageError):
    """A layer or blob that fails verification or cannot be unpacked safely."""


class ImagePullError(ImageError):
    """A pull that failed; the message carries the registry's own words.

    `str(err)` reads `failed to pull image "127.0.0.1:5000/nope:1": manifest unknown`.
    """

    def __init__(self, image: str, message: str, *, code: str | None = None,
                 http_status: int | None = None) -> None:
        super().__init__(f'failed to pull image "{image}": {message}')
        self.image = image
        self.message = message
        self.code = code
        self.http_status = http_status


class ImageNeverPullError(ImageError):
    """Pull policy Never and the image is not present."""

    reason = "ErrImageNeverPull"

    def __init__(self, image: str) -> None:
        super().__init__(f'Container image "{image}" is not present with pull policy of Never')
        self.image = image


class ArchiveError(ImageError):
    """An image archive (docker save or OCI layout tarball) that cannot be imported."""


class MountError(ImageError):
    """An overlay mount or unmount that failed."""
