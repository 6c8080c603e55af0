"""The playground page served at `/` (filled below)."""

PLAYGROUND_HTML = "<!doctype html><title>kerasllm</title>"
