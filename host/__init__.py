"""Host side: transports, the protocol client, the Device API, generation, and the CLI."""
