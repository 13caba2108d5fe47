"""End-to-end fixtures: a real one-node cluster (tests/e2e/cluster.py) and a multi-node one
(tests/e2e/multinode.py), each with a busybox image."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.e2e.cluster import NodeCluster, start_node_cluster
from tests.e2e.multinode import MultiNodeCluster, start_multi_node_cluster
from tests.support.images import build_busybox_image


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests need root (runc, CNI, nftables)")
    base = str(tmp_path_factory.mktemp("pk-e2e"))
    archive = os.path.join(base, "busybox.tar")
    build_busybox_image(archive, ref="docker.io/library/busybox:1.36",
                        extra_files={"/www/index.html": b"hello from the pod\n"})
    yield from start_node_cluster(base, image_archives=[archive])


@pytest.fixture(scope="module")
def multi_node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiNodeCluster]:
    """`pocketkube cluster up --nodes 2`: a master and two workers, each a network namespace."""
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests need root (namespaces, runc, CNI)")
    base = str(tmp_path_factory.mktemp("pk-multi"))
    archive = os.path.join(base, "busybox.tar")
    build_busybox_image(archive, ref="docker.io/library/busybox:1.36",
                        extra_files={"/www/index.html": b"hello from the pod\n"})
    yield from start_multi_node_cluster(base, workers=2, image_archives=[archive])
