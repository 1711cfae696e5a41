"""GPT-SoVITS inference, re-implemented in plain PyTorch (DESIGN.md: Speech engines)."""
