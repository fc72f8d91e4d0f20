"""Samplers that turn a portrait and speech into frames with the EchoMimic models."""
