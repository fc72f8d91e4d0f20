"""The same product on Ray Serve (`echolive serve --ray`): worker replicas that each own a renderer, an avatar
store and their sessions, behind an ingress that serves the HTTP API, the web client and the WebSocket API and
holds no renderer. See `server.cluster.deployment` for how the pieces fit."""
