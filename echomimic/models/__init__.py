"""EchoMimic networks (V1 and V2 share them) and their loading code."""

from .config import EchoMimicConfig, FaceLocatorConfig, MotionModuleConfig, UNetConfig, load_config
from .face_locator import FaceLocator
from .loading import (
    V1_VARIANTS,
    EchoMimicModels,
    build_models,
    load_echomimic,
    load_echomimic_v1,
    release_file_stems,
    variant_weight_files,
)
from .unet import DenoisingUNet, ReferenceFeatures, ReferenceUNet

__all__ = [
    "V1_VARIANTS",
    "DenoisingUNet",
    "EchoMimicConfig",
    "EchoMimicModels",
    "FaceLocator",
    "FaceLocatorConfig",
    "MotionModuleConfig",
    "ReferenceFeatures",
    "ReferenceUNet",
    "UNetConfig",
    "build_models",
    "load_config",
    "load_echomimic",
    "load_echomimic_v1",
    "release_file_stems",
    "variant_weight_files",
]
