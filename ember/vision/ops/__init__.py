"""``ember.vision.ops`` (torchvision.ops): box operations, non-maximum suppression, RoIAlign
and the building-block layers that model libraries import from torchvision."""

from .boxes import (batched_nms, box_area, box_convert, box_iou, clip_boxes_to_image,
                    complete_box_iou, distance_box_iou, generalized_box_iou, masks_to_boxes,
                    nms, remove_small_boxes)
from .misc import (MLP, Conv2dNormActivation, Conv3dNormActivation, FrozenBatchNorm2d, Permute,
                   SqueezeExcitation)
from .roi_align import RoIAlign, roi_align
from .roi_pool import RoIPool, roi_pool, sigmoid_focal_loss  # issue 23
from .stochastic_depth import StochasticDepth, stochastic_depth

__all__ = ["batched_nms", "box_area", "box_convert", "box_iou", "clip_boxes_to_image",
           "complete_box_iou", "distance_box_iou", "generalized_box_iou", "masks_to_boxes",
           "nms", "remove_small_boxes", "MLP", "Conv2dNormActivation", "Conv3dNormActivation",
           "FrozenBatchNorm2d", "Permute", "SqueezeExcitation", "RoIAlign", "roi_align",
           "StochasticDepth", "stochastic_depth"]
__all__ += ["RoIPool", "roi_pool", "sigmoid_focal_loss"]
