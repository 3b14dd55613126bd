"""Verilog export, cocotb testbenches and their runner helpers, and the Verilator
board harness (the simulated board)."""
