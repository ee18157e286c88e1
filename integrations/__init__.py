"""The outside world: sources, mappings, outbound integrations and deliveries."""
