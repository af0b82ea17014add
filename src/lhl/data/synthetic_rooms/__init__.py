"""Procedural indoor scenes rendered by vectorised ray casting: exact, mutually consistent labels."""
from lhl.data.synthetic_rooms.camera import intrinsics, to_mtan_normals
from lhl.data.synthetic_rooms.scene import CLASSES
from lhl.data.synthetic_rooms.writer import GENERATOR_VERSION, ensure_set, generate_sample, set_params, write_set

__all__ = ["CLASSES", "GENERATOR_VERSION", "ensure_set", "generate_sample", "intrinsics", "set_params", "to_mtan_normals", "write_set"]
