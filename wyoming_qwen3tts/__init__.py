"""wyoming-qwen3tts: Qwen3-TTS for Home Assistant and any Wyoming client."""

__version__ = "0.1.0"
