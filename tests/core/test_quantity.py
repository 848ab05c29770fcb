"""core.quantity reads quantities as the kubernetes library does (which only controller/runtime/kubernetes imports)."""

from __future__ import annotations

import pytest
from kubernetes.utils.quantity import parse_quantity as reference

from core.quantity import parse_quantity

SAMPLES = ["1", "0", "500m", "0.5", "1.5", "100Mi", "1Gi", "2Ti", "3Ei", "1k", "1M", "2G", "7n", "9u", "1e3", "2E-2",
           "+4", "-1", ".5", "5.", "128974848", "129e6", "123Mi", "1.25Ki"]


@pytest.mark.parametrize("text", SAMPLES)
def test_the_same_values_as_the_kubernetes_library(text: str) -> None:
    assert parse_quantity(text) == reference(text)


@pytest.mark.parametrize("text", ["", "1x", "Gi", "1 Gi", "1GiB", "--1", "1e", "0x10", "1.2.3"])
def test_what_is_not_a_quantity_is_refused(text: str) -> None:
    with pytest.raises(ValueError):  # "1 Gi" too, which the Python library takes and the apiserver refuses
        parse_quantity(text)
