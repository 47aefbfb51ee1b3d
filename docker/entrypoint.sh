#!/bin/sh
# Entry point of the standalone images (the docker_run.sh of the Wyoming servers).
#   docker run IMAGE [FLAGS...]        the Wyoming server; FLAGS are server flags (e.g. --model, --voice)
#   docker run IMAGE voices ...        the voice library command (also: synth ...)
#   docker run IMAGE bash              any other command runs as is
# Defaults (listen on 0.0.0.0:10200, data and model cache in /data) come from the image's settings file, so
# flags given here or in WYOMING_QWEN3TTS_ARGS override them.
set -eu

case "${1:-}" in
    "" | -* | voices | synth)
        exec python -m wyoming_qwen3tts "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
