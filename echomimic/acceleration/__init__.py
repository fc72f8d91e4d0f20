"""Acceleration for EchoMimic: FLOP arithmetic, generation profiles, the tiny decoder and compiled UNet backends.

Optional and imported module by module: nothing here is imported by the rest of `echomimic`, `profiles` needs no
torch (the server parses `--profile` without it), and Torch-TensorRT (the `[gpu]` extra) is imported only when an
engine is built or loaded.
"""
