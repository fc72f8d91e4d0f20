"""EchoMimic v1 networks, with the official checkpoints' key names."""

from echomimic.models.checkpoint_loading import CheckpointMismatchError, load_denoising_unet_state, load_strict
from echomimic.models.face_locator import FaceLocator
from echomimic.models.motion_module import MotionModule
from echomimic.models.reference_banks import ReferenceBanks
from echomimic.models.unet_2d_reference import ReferenceUNet2DConditionModel
from echomimic.models.unet_3d_denoising import EchoUNet3DConditionModel
from echomimic.models.whisper_encoder import WhisperAudioEncoder

__all__ = [
    "CheckpointMismatchError",
    "EchoUNet3DConditionModel",
    "FaceLocator",
    "MotionModule",
    "ReferenceBanks",
    "ReferenceUNet2DConditionModel",
    "WhisperAudioEncoder",
    "load_denoising_unet_state",
    "load_strict",
]
