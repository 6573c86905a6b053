"""The filter chain: pure functions of (request, table view) that build answers."""
