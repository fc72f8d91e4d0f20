"""Voice-agent adapters: the avatar as a Pipecat video service (`adapters.pipecat_avatar`) and a LiveKit Agents
avatar (`adapters.livekit_avatar`), both over the bot WebSocket API through `server.bot_client`.

Each adapter is imported on its own, and only by the agent that uses it: this package imports neither framework
itself, and the server never imports this package. Install a framework with its extra (`[pipecat]`, `[livekit]`).
"""
