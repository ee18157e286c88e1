"""Every outside platform the hub speaks to, one module each (Segment, Metronome, Kable, webhooks)."""
