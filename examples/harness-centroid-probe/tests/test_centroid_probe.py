from harness.api.testing import check_evaluator

from harness_centroid_probe import CentroidProbe


def test_centroid_probe_conforms():
    metrics = check_evaluator(CentroidProbe)
    assert 0 <= metrics.value <= 100 and len(metrics.breakdown) == 20
