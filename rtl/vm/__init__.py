"""The vector machine (VM) of the whole-model device: see machine.py."""
