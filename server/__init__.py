"""The I/O edge: HTTP routes, WebRTC signalling and tracks, sessions, and the `echolive` command line."""
