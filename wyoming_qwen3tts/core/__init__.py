"""Facts and helpers every layer shares (audio format, scripts, atomic writes); imports nothing above it."""
