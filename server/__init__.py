"""The I/O edge: HTTP routes, WebRTC tracks, the bot WebSocket, sessions, and the `echolive` command line."""
