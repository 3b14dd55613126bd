"""The model level: the BitNet config, the one table of tensor names, the model file
(load, check, save), the importers (HF folders, GGUF) and the tokenizers."""
