"""Procedural lateral cervical-spine phantom radiographs in the CSXA layout (``cspine demo-data``).

``anatomy`` draws a patient and places the vertebrae (and the 23 CSXA keypoints), ``render`` turns that
into a radiograph, ``folder`` writes the CSXA-shaped folder that ``cspine prepare`` ingests with the same
loader as the real set.
"""

from training.phantom.anatomy import CURVATURE_CLASSES, KEYPOINT_LABELS
from training.phantom.folder import is_complete, make_image, plan_images, write_phantom_folder

__all__ = ["CURVATURE_CLASSES", "KEYPOINT_LABELS", "is_complete", "make_image", "plan_images", "write_phantom_folder"]
