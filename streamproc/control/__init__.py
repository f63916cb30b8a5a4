"""The control plane: status events, cancellation, priority lanes, fair tenants, expiry
(docs/control.md)."""
