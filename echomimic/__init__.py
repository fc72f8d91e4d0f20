"""EchoMimic v1, written from scratch in the style of diffusers, loading the official checkpoints unchanged."""
