"""Cosign-compatible signature verification of target digests."""
