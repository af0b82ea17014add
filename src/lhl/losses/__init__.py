"""Pure loss functions shared by the lifelong methods (no state, no modules)."""
from lhl.losses.had_terms import (
    MENDS,
    HADConfig,
    class_balanced_loss,
    class_geometric_means,
    group_balanced_loss,
    had_term,
    normal_had,
    normal_sg,
    regression_had,
    regression_sg,
    semantic_had,
    semantic_sg,
)
from lhl.losses.salience import edge_mask, sobel_magnitude

__all__ = [
    "MENDS",
    "HADConfig",
    "class_balanced_loss",
    "class_geometric_means",
    "edge_mask",
    "group_balanced_loss",
    "had_term",
    "normal_had",
    "normal_sg",
    "regression_had",
    "regression_sg",
    "semantic_had",
    "semantic_sg",
    "sobel_magnitude",
]
