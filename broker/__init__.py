"""Forward publishers to subscribers, validating every message (XSUB/XPUB)."""
