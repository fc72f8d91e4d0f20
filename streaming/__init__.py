"""Real-time core: audio in, VAD, windows, one clock, pacing, interruption, idle motion, renderers. No torch."""
