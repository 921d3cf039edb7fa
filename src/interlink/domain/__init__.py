"""The pure domain model: no I/O, no clocks read here unless passed in."""
