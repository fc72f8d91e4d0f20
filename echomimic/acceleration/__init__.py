"""Acceleration for EchoMimic: FLOP arithmetic, generation profiles, the tiny decoder and compiled UNet backends.

Optional and imported module by module: only the live renderer imports it (decoder and backends), `profiles` needs no
torch (the server parses `--profile` without it), and Torch-TensorRT (the `[gpu]` extra) is imported only when an
engine is built or loaded.
"""
