"""Voice enrollment: check a recording, pick the reference clip, coach a live recording (DESIGN.md: Voices)."""
