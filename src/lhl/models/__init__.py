"""Networks: timm backbones, DeepLabV3 heads, the multi-head predictor."""
from lhl.models.predictor import MultiHeadPredictor

__all__ = ["MultiHeadPredictor"]
