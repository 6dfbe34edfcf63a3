"""The plugin API: everything a plugin author reads (hook specs, interfaces, registry,
parameter checks, errors and the conformance kit)."""
