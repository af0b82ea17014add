"""Pure loss functions shared by the lifelong methods (no state, no modules). HAD's options and the
choice between its forms live in `lhl.methods.had` (its functional entry point: `had_loss`)."""
from lhl.losses.had_parts import (
    MENDS,
    HADConfig,
    class_balanced_loss,
    class_geometric_means,
    group_balanced_loss,
    normal_sg,
    regression_sg,
    salience_keep,
    semantic_sg,
    soft_sg,
)
from lhl.losses.had_paper import PaperConfig, paper_had
from lhl.losses.had_release import release_error_count, release_normal_loss_map, release_normal_valid
from lhl.losses.had_terms import HAD_TERMS, had_term, normal_had, regression_had, semantic_had
from lhl.losses.salience import edge_mask, select_pixels, sobel_magnitude, top_fraction_mask

__all__ = [
    "HAD_TERMS",
    "MENDS",
    "HADConfig",
    "PaperConfig",
    "paper_had",
    "class_balanced_loss",
    "class_geometric_means",
    "edge_mask",
    "group_balanced_loss",
    "had_term",
    "normal_had",
    "normal_sg",
    "regression_had",
    "regression_sg",
    "release_error_count",
    "release_normal_loss_map",
    "release_normal_valid",
    "salience_keep",
    "semantic_had",
    "semantic_sg",
    "soft_sg",
    "select_pixels",
    "sobel_magnitude",
    "top_fraction_mask",
]
