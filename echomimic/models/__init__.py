"""EchoMimic networks (V1 and V2 share them) and their loading code."""

from .config import EchoMimicConfig, FaceLocatorConfig, MotionModuleConfig, UNetConfig, load_config
from .face_locator import FaceLocator
from .loading import EchoMimicModels, build_models, load_echomimic, release_file_stems, variant_weight_files
from .unet import DenoisingUNet, ReferenceFeatures, ReferenceUNet

__all__ = [
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
    "release_file_stems",
    "variant_weight_files",
]
