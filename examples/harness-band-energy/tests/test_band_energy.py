"""The plugin author's whole test: harness's conformance checks."""

from harness.api.testing import check_repr

from harness_band_energy import BandEnergy


def test_band_energy_conforms():
    check_repr(BandEnergy)
