"""Owens et al.'s binary codes: one bit per principal component, multi-label targets.

The features are projected onto their top ``bits`` principal components and each
projection is thresholded at its median, so every bit is on for half of the clips and the
bits are decorrelated. The pretext network predicts all bits at once (sigmoid outputs and
binary cross-entropy), which the trainer learns from ``output_kind = "bits"``.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import numpy as np

from harness.api.errors import BadInputError
from harness.api.interfaces import SEED_BOUNDS, Bounds, Labeler, Labels

from .preprocess import apply_preprocess, check_features, check_preprocess, pca_project


class PcaBinaryLabeler(Labeler):
    """Binary codes: PCA to ``bits`` components, each thresholded at its median."""

    name = "pca_binary"
    description = "Owens et al.'s binary codes: top principal components thresholded at the median"
    output_kind: ClassVar = "bits"
    size_param: ClassVar = "bits"
    #: parameters for harness.api.testing's conformance check (its 90 x 6 blobs allow 6 bits)
    test_params: ClassVar[dict[str, Any]] = {"bits": 4}

    def __init__(self, *, bits: Annotated[int, Bounds(1, 4096)] = 30,
                 seed: Annotated[int, SEED_BOUNDS] = 0, preprocess: str = "standardize"):
        if int(bits) < 1:
            raise BadInputError(f"pca_binary needs bits >= 1, got bits={bits}")
        if preprocess == "pca_whiten":
            raise BadInputError("pca_binary already projects onto principal components; "
                                "use preprocess none, standardize or l2")
        check_preprocess(preprocess, None)
        self.bits, self.seed, self.preprocess = int(bits), int(seed), preprocess

    def params(self) -> dict[str, Any]:
        return {"bits": self.bits, "seed": self.seed, "preprocess": self.preprocess}

    def fit_predict(self, features: np.ndarray) -> Labels:
        """uint8 0/1 codes [N, bits]; BadInputError if the features cannot give them."""
        x = check_features(features, min_rows=2)
        if self.bits > min(x.shape):
            raise BadInputError(f"cannot take {self.bits} bits from {x.shape[0]} samples x "
                                f"{x.shape[1]} dimensions (at most {min(x.shape)})")
        z = apply_preprocess(x, self.preprocess, seed=self.seed)
        projected, explained = pca_project(z, self.bits, seed=self.seed, whiten=False)
        codes = (projected > np.median(projected, axis=0)).astype(np.uint8)
        diagnostics = {
            "positive_rate": codes.mean(axis=0).round(4).tolist(),
            "distinct_codes": int(len(np.unique(codes, axis=0))),
            "explained_variance": explained,
            "n_samples": int(len(x)), "n_features": int(x.shape[1]),
        }
        return Labels(values=codes, kind="bits", num_outputs=self.bits, diagnostics=diagnostics)
