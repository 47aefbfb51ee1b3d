"""Voice library: cloned and designed voice profiles on disk, and their cached voice prompts."""
