"""The result ledger: the first answer published for each event, so a redelivered event gets
the same answer again (``docs/delivery.md``, invariant 5)."""
