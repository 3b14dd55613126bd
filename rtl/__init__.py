"""Amaranth 0.5 components of the ternary engine. Parameters come from
:class:`ternary_core.engine_config.EngineConfig`; formats and protocol constants are
imported from ``ternary_core``, never redefined here."""
