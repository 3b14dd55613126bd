"""The ULX3S's SDR SDRAM: LiteDRAM's controller, generated at build time, behind our
streams (:mod:`.litedram_core` generates it, :mod:`.controller` instantiates it)."""
