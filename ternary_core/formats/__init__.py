"""Packing and file formats: the engine's native tile layout, HF BitNet's offline 2-bit
packing, GGUF's TQ1_0/TQ2_0 blocks and the safetensors reader."""
