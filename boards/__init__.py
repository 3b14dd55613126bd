"""Board tops, the YoWASP build driver and report parsing."""
